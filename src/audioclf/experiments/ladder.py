"""The phase ladder of the reference reports in one command: queue every phase as a named DVC
experiment, run the queue, and write ``reports/phases.md``.

    audioclf ladder                              # every phase once, on the workspace params
    audioclf ladder --seeds 3                    # each phase with train.seed s, s+1, s+2
    audioclf ladder --seeds 3 --vary split       # ... seed (data, split) and train.seed together
    audioclf ladder --set train.epochs=5 --phases baseline,cnnv2-focal
    audioclf ladder --dry-run                    # print the plan and the reasons for skips

A phase is the ``-S`` overrides that turn the workspace ``params.yaml`` into it (:data:`PHASES`).
One whose params do not validate here, whose pretrained weights are not on this machine, or
whose extra (BirdNET, openSMILE) is not installed is listed as skipped with the reason. The runs
go through the DVC queue and are read back from ``dvc exp show --json``. Run i of each phase is
compared with the baseline's run i (same data, split and ``train.seed``, so the same test
files): a paired bootstrap of every metric's difference and McNemar's exact test; over several
seeds, the mean difference with two intervals, across the seeds (training noise) and over the
shared test files (sampling noise), significant only when both exclude zero.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import re
import shlex
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from audioclf.cli import parser
from audioclf.config.evaluation import EvaluateConfig
from audioclf.config.schema import build
from audioclf.errors import UserError
from audioclf.evaluation.paired import Comparison, Difference, compare_runs
from audioclf.evaluation.seeds import across_seeds, files_bootstrap
from audioclf.experiments.compare import METRICS as METRIC_COLUMNS
from audioclf.experiments.compare import (
    compared_keys,
    interval_cell,
    markdown_table,
    mcnemar_text,
    metric_values,
    points,
)
from audioclf.experiments.runs import METRICS, RunFiles
from audioclf.io import atomic_path, repo_root

log = logging.getLogger(__name__)


class Phase(NamedTuple):
    """One rung: experiment ``name``, ``title`` (its row in phases.md) and params ``overrides``."""

    name: str
    title: str
    overrides: tuple[str, ...]


# The reference reports' ladder (Phase 0 -> 2B -> 3), each rung changing one thing from the one
# before, as `name: [title, the -S overrides of the workspace params.yaml]`. AST reads its own
# front-end (Kaldi fbank) and, like ImageNet's ResNet-50, needs its pinned weights (downloaded by
# the first run where there is internet; skipped with the download command where not);
# BirdNET's model ships in the birdnet extra (CC BY-NC-SA 4.0); WavLM's frozen embeddings under a
# linear head are the cheap pretrained rung (SUPERB's protocol: a middle layer for emotion, its
# Hub weights downloaded or the rung skipped as AST's); ComParE + SVM is the
# speech-emotion baseline (the opensmile extra, research licence), then with each speaker
# standardised on its own files. The leaky split is a control,
# not a rung: what leakage adds to the test scores (compared unpaired: its test files differ).
# Every phase fixes the reference reports' front-end (REFERENCE_FEATURES), which params.yaml's
# defaults leave to the data (`auto`); `--set features.sample_rate=auto ...` comes after it.
REFERENCE_FEATURES = (
    "features.sample_rate=22050",
    "features.n_fft=2048",
    "features.hop_length=512",
    "features.n_mels=128",
    "features.segment_seconds=4.0",
)
PHASES = tuple(
    Phase(name, title, (*REFERENCE_FEATURES, *overrides.split()))
    for name, (title, overrides) in yaml.safe_load(
        """
        baseline: [CNN + CE, model=cnn loss=ce]
        wce-balanced: [CNN + weighted CE (balanced),
            model=cnn loss=weighted_ce loss_params.weighted_ce.weights=balanced]
        wce-sqrt: [CNN + weighted CE (sqrt),
            model=cnn loss=weighted_ce loss_params.weighted_ce.weights=sqrt]
        cnn-focal: [CNN + focal, model=cnn loss=focal]
        cnnv2-focal: [CNNv2 + focal, model=cnn_v2 loss=focal]
        ast-focal: [AST + focal (fbank), model=ast loss=focal]
        ast-focal-aug: [AST + focal + SpecAugment + MixUp,
            model=ast loss=focal augment.specaugment.p=0.8 augment.mixup.p=0.5]
        resnet50: ["ImageNet ResNet-50 (the log-mel as an image)", model=resnet50 loss=ce]
        birdnet-linear: [BirdNET embeddings + linear head, model=birdnet loss=ce]
        wavlm-logreg: ["WavLM embeddings (frozen, layer 6) + logistic regression",
            model=logreg features.kind=hf features.encoder=microsoft/wavlm-base-plus
            features.encoder_revision=4c66d4806a428f2e922ccfa1a962776e232d487b
            features.encoder_layer=6]
        compare-svm: [ComParE + linear SVM,
            model=svm features.kind=compare model_params.svm.kernel=linear train.norm=global]
        compare-svm-group: [
            "ComParE + linear SVM + speaker normalisation (train.norm: group, transductive)",
            model=svm features.kind=compare model_params.svm.kernel=linear train.norm=group]
        leaky-split: ["CNN + CE, leaky split (control)", model=cnn loss=ce split.leaky=true]
        """
    ).items()
)
# what --seeds varies: train.seed alone (same data and split), or seed too (data, split, training)
VARY = ("train", "split")
# files a folder of Hugging Face weights holds (config plus one of the weight formats)
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TRANSDUCTIVE_NOTE = (
    "† `train.norm: group`: each group (speaker) standardised on its own files, the test "
    "groups' unlabelled files included (transductive); not comparable with a row without †."
)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.003"`` -> ``("train.lr", 0.003)``; the value is read as YAML, as DVC reads it.

    >>> parse_override("params.yaml:model_params.ast.pretrained=null")
    ('model_params.ast.pretrained', None)
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not key=value")
    path, _, key = key.strip().rpartition(":")
    if path and Path(path).name != "params.yaml":
        raise ValueError(f"override {text!r}: only params.yaml keys can be overridden, not {path}")
    return key, yaml.safe_load(value) if value.strip() else ""


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """A copy of ``raw`` params with the overrides set; like ``dvc exp run -S``, only existing keys.

    Raises:
        ValueError: an override is malformed or names a key params.yaml lacks.
    """
    out = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        node, parts = out, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(
                    f"-S {key}: params.yaml has no key '{'.'.join(parts[: i + 1])}' "
                    "(not available in this checkout)"
                )
            if i < len(parts) - 1:
                node = node[part]
        node[parts[-1]] = value
    return out


def pretrained_problem(raw: dict, root: Path, cache_dir: str | Path | None = None) -> str | None:
    """Why the selected model's ``pretrained`` weights cannot be loaded offline, or None if they
    can (or it takes none): a folder (a relative one under the repository ``root``) or a Hub id
    at its ``revision`` in the Hugging Face cache (``cache_dir``; None: the default) with a config
    and weights. The reason for a Hub id names the command that downloads it."""
    model = raw.get("model")
    cfg = (raw.get("model_params") or {}).get(model) or {}
    features = raw.get("features") or {}
    if features.get("kind") == "hf":  # the front-end is a pretrained encoder
        problem = weights_problem(
            features.get("encoder"),
            features.get("encoder_revision"),
            "features.encoder",
            root,
            cache_dir,
        )
        if problem:
            return problem
    return weights_problem(
        cfg.get("pretrained"),
        cfg.get("revision"),
        f"model_params.{model}.pretrained",
        root,
        cache_dir,
    )


def weights_problem(
    name: str | None,
    revision: str | None,
    key: str,
    root: Path,
    cache_dir: str | Path | None = None,
) -> str | None:
    """Why weights ``name`` (a folder, or a Hub id at ``revision``) cannot be loaded offline, or
    None if they can or none are named (:func:`pretrained_problem`)."""
    if not name:
        return None
    folder = Path(root, Path(name).expanduser())  # an absolute name stays itself
    if not folder.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        from audioclf.hub import HUB_PATTERNS, download_command

        revision = revision or "main"
        try:
            folder = Path(
                snapshot_download(
                    name,
                    revision=revision,
                    allow_patterns=list(HUB_PATTERNS),
                    cache_dir=cache_dir,
                    local_files_only=True,
                )
            )
        except (HFValidationError, LocalEntryNotFoundError):  # not a Hub id, or not cached
            return (
                f"{key}: weights {name!r} not available locally (revision {revision}: no such "
                f"folder, not in the Hugging Face cache); where there is internet run "
                f"`{download_command(name, revision)}`, or set {key}=<folder>"
                + (", or null to train from scratch" if key.startswith("model_params") else "")
            )
    present = {p.name for p in folder.iterdir()}
    if "config.json" in present and present & set(WEIGHT_FILES):
        return None
    return f"{key}: folder {str(folder)!r} holds no config.json with weights"


def check_phase(
    raw: dict,
    overrides: list[str] | tuple[str, ...],
    root: Path,
    cache_dir: str | Path | None = None,
) -> str | None:
    """None if the overridden params are valid, their weights present (:func:`pretrained_problem`)
    and their front-end's extra (BirdNET, openSMILE) installed; else the reason."""
    from audioclf.config import parse_params

    try:
        resolved = apply_overrides(raw, overrides)
        kind = parse_params(resolved).features.kind
    except ValueError as err:  # bad override, or ParamsError naming the key and the allowed values
        return str(err)
    if kind == "birdnet":
        from audioclf.features import birdnet

        return birdnet.missing()
    from audioclf.features import opensmile

    if kind in opensmile.FEATURE_SETS:
        return opensmile.missing(kind)
    return pretrained_problem(resolved, root, cache_dir)


@dataclass
class PlannedPhase:
    """A phase with its verdict: ``runs`` (experiment name -> overrides) if it can run, else
    ``reason``; ``seeds``: experiment name -> the seed it varies (None: one run, no override)."""

    phase: Phase
    reason: str | None = None
    selected: bool = True
    runs: dict[str, list[str]] = field(default_factory=dict)
    seeds: dict[str, int | None] = field(default_factory=dict)


def seed_overrides(vary: str, seed: int) -> list[str]:
    """The overrides of one seeded run.

    >>> seed_overrides("train", 43), seed_overrides("split", 43)
    (['train.seed=43'], ['seed=43', 'train.seed=43'])
    """
    return [f"train.seed={seed}"] if vary == "train" else [f"seed={seed}", f"train.seed={seed}"]


def plan(
    raw: dict,
    phases: tuple[Phase, ...] | list[Phase] = PHASES,
    *,
    root: Path,
    extra: list[str] = (),
    seeds: int = 1,
    vary: str = "train",
    only: list[str] | None = None,
    tag: str = "",
    cache_dir: str | Path | None = None,
) -> list[PlannedPhase]:
    """Check every phase against the params and name its runs.

    Args:
        raw: the workspace params (params.yaml as read).
        phases: the ladder.
        root: the repository (relative pretrained folders are looked up there).
        extra: ``key=value`` overrides applied to every phase, after its own.
        seeds: runs per phase; with more than one, run i sets the seeds of
            :func:`seed_overrides` to s + i (s: ``train.seed``, else ``seed``; ``seed`` when
            ``vary`` is ``split``).
        vary: ``train`` (``train.seed`` alone: the data and the split stay) or ``split``
            (``seed`` and ``train.seed``: the data, the split and the training change).
        only: names of the phases to run (None: all); the others are still checked.
        tag: appended to experiment names (``baseline-<tag>``), to keep an earlier ladder.
        cache_dir: the Hugging Face cache to look for weights in (None: the default).

    Raises:
        ValueError: ``extra``, ``seeds`` or ``vary`` is invalid for the workspace params, or an
            unknown phase is named in ``only``.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if vary not in VARY:
        raise ValueError(f"vary must be one of {', '.join(VARY)}, got {vary!r}")
    unknown = sorted(set(only or ()) - {p.name for p in phases})
    if unknown:
        raise ValueError(f"unknown phase(s) {unknown}; phases: {', '.join(p.name for p in phases)}")
    problem = check_phase(raw, list(extra), root, cache_dir)
    if problem:
        raise ValueError(f"--set: {problem}")
    shared = apply_overrides(raw, list(extra))
    start = shared.get("seed")
    if vary == "train" and (shared.get("train") or {}).get("seed") is not None:
        start = shared["train"]["seed"]
    if not isinstance(start, int) or isinstance(start, bool):
        raise ValueError(f"params.yaml's seed is not an integer (got {start!r})")
    series = list(range(start, start + seeds)) if seeds > 1 else [None]
    planned = []
    for phase in phases:
        overrides = [*phase.overrides, *extra]
        check = overrides + (seed_overrides(vary, start) if seeds > 1 else [])
        item = PlannedPhase(
            phase, check_phase(raw, check, root, cache_dir), only is None or phase.name in only
        )
        if item.reason is None and item.selected:
            for seed in series:
                name = phase.name + (f"-{tag}" if tag else "") + (f"-s{seed}" if seed else "")
                item.runs[name] = overrides + (seed_overrides(vary, seed) if seed else [])
                item.seeds[name] = seed
        planned.append(item)
    return planned


class DvcError(UserError, RuntimeError):
    """A dvc command failed, or the queue cannot be used as asked; the message says which."""


def queue_command(name: str, overrides: list[str]) -> list[str]:
    """The ``dvc exp run --queue`` arguments for one named experiment.

    >>> queue_command("baseline", ["model=cnn", "seed=1"])
    ['exp', 'run', '--queue', '-n', 'baseline', '-S', 'model=cnn', '-S', 'seed=1']
    """
    return ["exp", "run", "--queue", "-n", name, *[arg for o in overrides for arg in ("-S", o)]]


class Dvc:
    """The DVC and git commands of the ladder, run in the repository ``root``."""

    def __init__(self, root: Path):
        self.root = root

    def run(self, args: list[str]) -> str:
        """``dvc <args>``'s stdout.

        Raises:
            DvcError: the command failed; the message holds its stderr.
        """
        out = subprocess.run(["dvc", *args], cwd=self.root, capture_output=True, text=True)
        if out.returncode != 0:
            raise DvcError(
                f"dvc {' '.join(args)} failed ({out.returncode}):\n"
                f"{(out.stderr or out.stdout).strip()[-3000:]}"
            )
        return out.stdout

    def commit(self, rev: str = "HEAD", *, short: bool = False) -> str:
        """The commit ``rev`` names (HEAD: the baseline of experiments queued now)."""
        cmd = ["git", "rev-parse", *(["--short"] if short else []), rev]
        return subprocess.run(
            cmd, cwd=self.root, capture_output=True, text=True, check=True
        ).stdout.strip()

    def queue_tasks(self) -> list[dict[str, str]]:
        """``dvc queue status`` as ``[{"task", "name", "status"}]`` (Queued, Running, Success...)."""
        tasks = []
        for line in self.run(["queue", "status"]).splitlines():
            fields = line.split()
            if len(fields) >= 4 and re.fullmatch(r"[0-9a-f]{7,}", fields[0]):
                tasks.append({"task": fields[0], "name": fields[1], "status": fields[-1]})
        return tasks

    def failure_reason(self, name: str) -> str:
        """The most telling line of a failed experiment's log: the last exception, else ERROR."""
        try:
            lines = [line.strip() for line in self.run(["queue", "logs", name]).splitlines()]
        except DvcError as err:
            return f"failed (no log: {err})"
        errors = [line for line in lines if re.match(r"^\w[\w.]*(Error|Exception): ", line)]
        errors = errors or [line for line in lines if line.startswith("ERROR")]
        return errors[-1] if errors else f"failed (see: dvc queue logs {name})"

    def show(self, rev: str) -> list[dict]:
        """``dvc exp show --json`` of the experiments of commit ``rev``."""
        return json.loads(self.run(["exp", "show", "--json", "--rev", rev]) or "[]")


def collect(shown: list[dict], names: list[str]) -> dict[str, dict[str, Any]]:
    """Results of the named experiments from ``dvc exp show --json``.

    Returns:
        name -> ``{"metrics"}`` (reports/metrics.json), ``params`` (params.yaml) and ``rev`` (the
        experiment's commit), or ``{"error": message}`` for a failed one, or nothing for a name
        that is absent. With several of one name, the latest counts.
    """
    found: dict[str, dict[str, Any]] = {}
    revs = [r for c in shown for group in c.get("experiments") or [] for r in group.get("revs", [])]
    for rev in sorted(revs, key=lambda r: (r.get("data") or {}).get("timestamp") or ""):
        name, data = rev.get("name"), rev.get("data") or {}
        if name not in names:
            continue
        metrics = ((data.get("metrics") or {}).get(METRICS) or {}).get("data")
        if rev.get("error"):
            found[name] = {"error": rev["error"].get("msg") or "experiment failed"}
        elif metrics is None:
            found[name] = {"error": f"no {METRICS} in the experiment"}
        else:
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
            found[name] = {"metrics": metrics, "params": params, "rev": rev.get("rev")}
    return found


def execute(
    planned: list[PlannedPhase], dvc: Dvc, *, jobs: int = 1, force: bool = False
) -> dict[str, dict]:
    """Queue every run, run the queue, and read the results back (:func:`read_back`).

    Raises:
        DvcError: a name is taken on this commit (DVC would keep one experiment of the two, and
            a failed task of that name would shadow the new result) and not ``force``; or the
            queue holds other experiments, which would run too.
    """
    names = [name for item in planned for name in item.runs]
    if not names:
        return {}
    taken = sorted(set(dvc.run(["exp", "list", "--name-only"]).split()) & set(names))
    tasks = [
        t["task"]
        for t in dvc.queue_tasks()
        if t["name"] in names and t["status"] in ("Queued", "Running", "Failed")
    ]
    if (taken or tasks) and not force:
        raise DvcError(
            f"experiment name(s) already used on this commit: {', '.join(taken + tasks)}; pass "
            "--force to replace them or --tag to name this ladder differently"
        )
    if taken:
        dvc.run(["exp", "remove", *taken])
    if tasks:
        dvc.run(["queue", "remove", *tasks])
    waiting = [t["name"] for t in dvc.queue_tasks() if t["status"] in ("Queued", "Running")]
    if waiting:
        raise DvcError(
            f"the DVC queue already holds experiments {waiting}, which the ladder would run too; "
            "run them (dvc queue start) or remove them (dvc queue remove --queued) first"
        )
    base = dvc.commit()  # the experiments' baseline, wherever HEAD is when they end
    for item in planned:
        for name, overrides in item.runs.items():
            dvc.run(queue_command(name, overrides))
    dvc.run(["exp", "run", "--run-all", "-j", str(jobs)])  # waits; failures are read back
    return read_back(names, dvc, base)


def read_back(names: list[str], dvc: Dvc, base: str) -> dict[str, dict]:
    """The named experiments of baseline commit ``base``, a failed one with its log's reason.

    Returns:
        experiment name -> ``{"metrics", "params", "rev"}`` or ``{"error"}``.
    """
    if dvc.commit() != base:
        log.warning("ladder: HEAD moved while it ran; reading the experiments of %s", base[:7])
    found = collect(dvc.show(base), names)
    for name in names:
        if "error" in found.get(name, {"error": None}):
            found[name] = {"error": dvc.failure_reason(name)}
    return found


@dataclass(frozen=True)
class PhaseDifference:
    """A phase minus the baseline in one metric: ``files``, the interval over resamples of the
    test files (one run: the pair's own; several: of the mean over seeds), and ``seeds``,
    Student's t interval across seeds (None with one run)."""

    files: Difference
    seeds: Difference | None = None

    @property
    def diff(self) -> float:
        return self.files.diff

    @property
    def significant(self) -> bool:
        """Whether every interval excludes zero."""
        return self.files.significant and (self.seeds is None or self.seeds.significant)


@dataclass
class PhaseComparison:
    """A phase against the baseline: the (baseline run, phase run) pairs, each pair's
    :class:`Comparison`, per metric the :class:`PhaseDifference`, and why pairs are missing."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    per_run: list[Comparison] = field(default_factory=list)
    combined: dict[str, PhaseDifference] = field(default_factory=dict)
    note: str = ""


@dataclass
class PhaseResult:
    """What happened to one phase: ``status`` is ran, failed, skipped or not selected."""

    name: str
    title: str
    status: str
    note: str = ""
    experiments: list[str] = field(default_factory=list)  # the runs that succeeded
    values: dict[str, list[float]] = field(default_factory=dict)  # column -> one value per run
    comparison: PhaseComparison | None = None  # against the baseline (None: the baseline itself)
    transductive: bool = False  # its inputs were normalised per group, test groups' files included


def summarise(planned: list[PlannedPhase], found: dict[str, dict]) -> list[PhaseResult]:
    """One :class:`PhaseResult` per phase from the plan and the experiments' results."""
    results = []
    for item in planned:
        p = item.phase
        if item.reason is not None:
            results.append(PhaseResult(p.name, p.title, "skipped", item.reason))
            continue
        if not item.selected:
            results.append(PhaseResult(p.name, p.title, "not selected", "not in --phases"))
            continue
        result = PhaseResult(p.name, p.title, "ran")
        failures = []
        for name in item.runs:
            outcome = found.get(name, {"error": "no result in dvc exp show"})
            if "error" in outcome:
                failures.append(f"{name}: {outcome['error']}")
                continue
            result.experiments.append(name)
            result.transductive |= bool(outcome["metrics"].get("transductive"))
            for column, value in metric_values(outcome["metrics"]).items():
                result.values.setdefault(column, []).append(value)
        if failures:
            result.status = "ran" if result.experiments else "failed"
            result.note = f"{len(failures)} of {len(item.runs)} run(s) failed: " + "; ".join(
                failures
            )
        results.append(result)
    return results


def compare_phase(
    pairs: list[tuple[str, str]],
    files: Callable[[str], RunFiles],
    cfg: EvaluateConfig,
    seed: int,
) -> PhaseComparison:
    """Compare each (baseline run, phase run) pair by their files (``files(name)``)."""
    out = PhaseComparison()
    problems, loaded, buckets = [], [], []
    for base_name, name in pairs:
        base, run = files(base_name), files(name)
        try:
            pa, pb = base.predictions(), run.predictions()
            bucket = (base.bucket_of(pa.labels), run.bucket_of(pb.labels))
            comparison = compare_runs(
                pa,
                pb,
                n_boot=cfg.bootstrap,
                level=cfg.ci_level,
                seed=seed,
                ece_bins=cfg.ece_bins,
                bucket_of_a=bucket[0],
                bucket_of_b=bucket[1],
            )
        except UserError as err:
            problems.append(f"{name}: {err}")
            continue
        out.pairs.append((base_name, name))
        out.per_run.append(comparison)
        loaded.append((pa, pb))
        buckets.append(bucket)
    if len(out.per_run) == 1:
        out.combined = {k: PhaseDifference(d) for k, d in out.per_run[0].differences.items()}
    elif out.per_run:
        pooled = files_bootstrap(
            loaded,
            n_boot=cfg.bootstrap,
            level=cfg.ci_level,
            seed=seed,
            ece_bins=cfg.ece_bins,
            bucket_of=buckets,
        )
        out.combined = {
            k: PhaseDifference(
                d, across_seeds([c.differences[k] for c in out.per_run], cfg.ci_level)
            )
            for k, d in pooled.items()
            if all(k in c.differences for c in out.per_run)
        }
    if problems:
        out.note = f"{len(problems)} of {len(pairs)} comparison(s) failed: " + "; ".join(problems)
    return out


def compare_with_baseline(
    results: list[PhaseResult],
    planned: list[PlannedPhase],
    revs: dict[str, str],
    params: dict,
    root: Path,
    *,
    baseline: str,
) -> None:
    """Give every phase that ran, other than ``baseline``, its ``comparison`` with the baseline's
    run of the same seed; ``revs``: experiment name -> the git revision holding its files;
    ``params``: what the phases share (the statistics follow its ``evaluate`` and ``seed``)."""
    cfg = build(EvaluateConfig, params.get("evaluate"), "evaluate")
    seeds = {item.phase.name: item.seeds for item in planned}
    base = next((r for r in results if r.name == baseline and r.status == "ran"), None)
    if base is None:
        return
    by_seed = {seeds[baseline][n]: n for n in base.experiments}

    def files(name: str) -> RunFiles:
        return RunFiles(revs.get(name, name), root)

    for r in results:
        if r is base or r.status != "ran":
            continue
        mine = seeds[r.name]
        pairs = [(by_seed[mine[n]], n) for n in r.experiments if mine[n] in by_seed]
        log.info("ladder: comparing %s with %s (%d run(s))", r.name, baseline, len(pairs))
        r.comparison = compare_phase(pairs, files, cfg, params.get("seed", 0))
        if len(pairs) < len(r.experiments):
            missing = (
                f"{len(r.experiments) - len(pairs)} run(s) without a baseline run of the same seed"
            )
            r.comparison.note = "; ".join(filter(None, [r.comparison.note, missing]))


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _cell(values: list[float]) -> str:
    """``52.4 ± 1.2`` in percent: mean ± sample std (ddof=1) over seeds."""
    if not values:
        return "–"
    std = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{100 * statistics.fmean(values):.1f}{std}"


def phase_cell(d: PhaseDifference) -> str:
    """One run: ``+3.4 [-1.4, +8.2]``; several: the mean with the interval across seeds and the
    interval over the test files; bold when every interval excludes zero."""
    if d.seeds is None:
        return interval_cell(d.files)
    s, f = d.seeds, d.files
    text = f"{points(d.diff)} (seeds [{points(s.low)}, {points(s.high)}]; "
    text += f"files [{points(f.low)}, {points(f.high)}])"
    return f"**{text}**" if d.significant else text


def _mcnemar(comparisons: list[Comparison]) -> str:
    """Files only the baseline / only the phase gets right and p, per run; ``unpaired`` without."""
    if any(c.mcnemar is None for c in comparisons) or not comparisons:
        return "unpaired" if comparisons else "–"
    if len(comparisons) == 1:
        return mcnemar_text(comparisons[0])
    return "p = " + ", ".join(f"{c.mcnemar.p:.3g}" for c in comparisons)


def metrics_table(results: list[PhaseResult], baseline: str) -> list[str]:
    """One row per phase, in ladder order; values only (a difference between two runs means
    something only next to its interval: those are in the comparison table)."""
    columns = [c for c, _ in METRIC_COLUMNS]
    rows = [
        [
            f"{_escape(r.title)} (`{r.name}`)"
            + (" ← baseline" if r.name == baseline else "")
            + (" †" if r.transductive else ""),
            str(len(r.experiments) or "–"),
            *[_cell(r.values.get(c, [])) for c in columns],
            r.status + (f": {_escape(r.note)}" if r.note else ""),
        ]
        for r in results
    ]
    lines = markdown_table(
        ["phase", "runs", *columns, "status"], rows, "ll" + "r" * len(columns) + "l"
    )
    return lines + (["", TRANSDUCTIVE_NOTE] if any(r.transductive for r in results) else [])


def comparison_rows(results: list[PhaseResult]) -> list[str]:
    """The comparison table: one row per phase that was compared with the baseline."""
    keys = compared_keys()
    rows = []
    for r in results:
        c = r.comparison
        if c is None or r.status != "ran":
            continue
        marked = [col for col, k in keys if k in c.combined and c.combined[k].significant]
        rows.append(
            [
                f"{_escape(r.title)} (`{r.name}`)",
                str(len(c.per_run) or "–"),
                *[phase_cell(c.combined[k]) if k in c.combined else "–" for _, k in keys],
                _mcnemar(c.per_run),
                ", ".join(marked) or ("none" if c.combined else _escape(c.note) or "–"),
            ]
        )
    header = ["phase", "runs", *[f"Δ {c}" for c, _ in keys], "McNemar", "significant"]
    return markdown_table(header, rows, "ll" + "r" * len(keys) + "ll")


def per_run_rows(results: list[PhaseResult]) -> list[str]:
    """Each (phase run, baseline run) pair with its own paired interval and McNemar test."""
    keys = compared_keys()
    rows = [
        [
            f"`{name}`",
            f"`{base}`",
            *[interval_cell(c.differences[k]) if k in c.differences else "–" for _, k in keys],
            _mcnemar([c]),
        ]
        for r in results
        if r.comparison
        for (base, name), c in zip(r.comparison.pairs, r.comparison.per_run, strict=True)
    ]
    header = ["run", "against", *[f"Δ {c}" for c, _ in keys], "McNemar"]
    return markdown_table(header, rows, "ll" + "r" * len(keys) + "l")


def describe_seeds(seeds: list[int], vary: str) -> str:
    """What the runs of each phase vary, for the report's header.

    >>> describe_seeds([], "train")
    "One run per phase, on the workspace's `seed` and `train.seed`."
    """
    listed = ", ".join(map(str, seeds))
    if not seeds:
        return "One run per phase, on the workspace's `seed` and `train.seed`."
    if vary == "train":
        return (
            f"{len(seeds)} runs per phase with `train.seed` = {listed}: initialisation, shuffling, "
            "augmentation and dropout vary; the data and the split (`seed`) are the same in every "
            "run, so every run of a phase is scored on the same test files."
        )
    return (
        f"{len(seeds)} runs per phase with `seed` = `train.seed` = {listed}: the data (synthetic "
        "generation), the split and the training vary together; run i of a phase shares its data "
        "and split with run i of the baseline."
    )


def report(
    results: list[PhaseResult],
    planned: list[PlannedPhase],
    params: dict,
    *,
    command: str,
    vary: str,
    baseline: str,
    commit: str,
) -> str:
    """phases.md: header, the metrics table, the comparison with the baseline, each run's
    comparison (with several seeds), then each phase's overrides and experiments.

    Args:
        results: one per phase, in ladder order (with their comparisons).
        planned: the plan they ran.
        params: what the phases share (the workspace params with ``--set``).
        command: the command line that made the report.
        vary: what the seeds varied (:data:`VARY`).
        baseline: the phase the others are compared with.
        commit: the experiments' baseline commit.
    """
    cfg = build(EvaluateConfig, params.get("evaluate"), "evaluate")
    pct, n_boot = f"{100 * cfg.ci_level:g} %", cfg.bootstrap
    seeds = sorted({s for item in planned for s in item.seeds.values() if s})
    several = any(len(r.comparison.per_run) > 1 for r in results if r.comparison)
    spread = (
        f"the mean of the per-run differences (run i against the baseline's run i) with two {pct} "
        "intervals: *seeds*, Student's t across the runs (df = runs − 1: the spread of training); "
        f"*files*, {n_boot} bootstrap resamples of the test files, each resample applied to every "
        "run scored on those files (the sampling of the test set); each run's own paired interval "
        "is in the next table"
        if several
        else f"a {pct} paired bootstrap interval ({n_boot} resamples of the test files, both runs "
        "scored on each)"
    )
    lines = [
        "# Phase ladder",
        "",
        f"Dataset `{params.get('dataset')}`, baseline commit `{commit}`, "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}: `{command}`",
        "",
        describe_seeds(seeds, vary),
        "",
        "Test-set metrics in percent, mean ± sample std (ddof=1) over the runs. UAR: balanced "
        f"accuracy. ECE: calibration error over {cfg.ece_bins} bins, lower is "
        f"better. head/mid/tail F1: macro-F1 over the classes with >= {cfg.buckets.head}, "
        f"between, and <= {cfg.buckets.tail} training clips; tail F1 is the reference "
        "reports' rare-species F1. Each run's own bootstrap intervals: `test_ci` in its "
        "reports/metrics.json (`dvc exp show`). –: not run, or no class of that bucket has test "
        "items.",
        "",
        *metrics_table(results, baseline),
        "",
        f"## Against `{baseline}`",
        "",
        f"Each phase minus `{baseline}` in percentage points, on the same test files: {spread}. "
        f"**Bold**: every interval excludes zero (significant at {pct}); intervals are per "
        "comparison, not adjusted for the number of phases. McNemar: exact test on the files "
        f"only `{baseline}` / only the phase classifies right (counts, then p; with several runs "
        "one p per run). A phase on other test files (the leaky split) is compared unpaired: each "
        "run's files resampled on their own, no McNemar.",
        "",
        *(
            comparison_rows(results)
            if any(r.comparison for r in results)
            else [f"Nothing to compare: `{baseline}` and at least one other phase must run."]
        ),
        "",
    ]
    if several:
        lines += [
            "### Each run against the baseline run of the same seed",
            "",
            f"Paired bootstrap, {n_boot} resamples, {pct}.",
            "",
            *per_run_rows(results),
            "",
        ]
    lines += [
        "## Phases",
        "",
        "Each phase is the workspace params.yaml with these overrides (`dvc exp run -S ...`):",
        "",
    ]
    for item in planned:
        listed = ", ".join(f"`{n}`" for n in item.runs) or "none"
        overrides = " ".join(item.phase.overrides) or "(none)"
        lines.append(f"- `{item.phase.name}`: `{overrides}`; experiments: {listed}")
    return "\n".join(lines) + "\n"


def run_phases(
    planned: list[PlannedPhase],
    params: dict,
    dvc: Dvc,
    *,
    command: str,
    vary: str,
    baseline: str,
    jobs: int = 1,
    force: bool = False,
    read_back_from: str | None = None,
) -> tuple[list[PhaseResult], str]:
    """Run the plan through the DVC queue (or, with ``read_back_from``, read the experiments it
    ran from that commit) and compare each phase with ``baseline``; writes no file.

    Returns:
        the results and the report (:func:`report`).
    """
    if read_back_from:
        found = read_back([n for item in planned for n in item.runs], dvc, read_back_from)
    else:
        found = execute(planned, dvc, jobs=jobs, force=force)
    results = summarise(planned, found)
    revs = {name: out.get("rev") or name for name, out in found.items()}
    compare_with_baseline(results, planned, revs, params, dvc.root, baseline=baseline)
    try:
        commit = dvc.commit(read_back_from or "HEAD", short=True)
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    text = report(
        results, planned, params, command=command, vary=vary, baseline=baseline, commit=commit
    )
    return results, text


def log_plan(planned: list[PlannedPhase]) -> None:
    """Each phase's verdict and the ``dvc exp run --queue`` command of each of its runs."""
    for item in planned:
        verdict = item.reason or (
            "not selected" if not item.selected else f"{len(item.runs)} run(s)"
        )
        log.info("%s: %s", item.phase.name, verdict)
        for name, overrides in item.runs.items():
            log.info("    %s", shlex.join(["dvc", *queue_command(name, overrides)]))


def main(argv: list[str]) -> dict:
    ap = parser(__doc__, prog="audioclf ladder")
    add = ap.add_argument
    add("--out", default="reports/phases.md", help="the report (markdown)")
    add("--seeds", type=int, default=1, help="runs per phase (seeds s, s+1, ...)")
    add("--vary", choices=VARY, default="train", help="train: train.seed only; split: seed too")
    add(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override applied to every phase (repeatable), e.g. --set train.epochs=3",
    )
    add("--phases", help="comma-separated phases to run (the others are still checked, listed)")
    add("--tag", default="", help="experiment names' suffix (keeps an earlier ladder)")
    add("--force", action="store_true", help="replace experiments that have these names")
    add("--jobs", type=int, default=1, help="experiments run at once")
    add("--dry-run", action="store_true", help="print the plan and the skips; queue nothing")
    add("--read-back", metavar="COMMIT", help="queue nothing: report what ran from COMMIT")
    args = ap.parse_args(argv)
    root = repo_root()
    raw = yaml.safe_load(Path(args.params).read_text())
    try:
        planned = plan(
            raw,
            root=root,
            extra=args.extra,
            seeds=args.seeds,
            vary=args.vary,
            tag=args.tag,
            only=args.phases.split(",") if args.phases else None,
        )
    except ValueError as err:
        ap.error(str(err))
    log_plan(planned)
    if args.dry_run:
        return {"planned": planned}
    results, text = run_phases(
        planned,
        apply_overrides(raw, args.extra),
        Dvc(root),
        command=shlex.join(["audioclf", "ladder", *argv]),
        vary=args.vary,
        baseline=PHASES[0].name,
        jobs=args.jobs,
        force=args.force,
        read_back_from=args.read_back,
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    log.info("ladder: wrote %s", args.out)
    return {"planned": planned, "results": results, "out": args.out, "text": text}
