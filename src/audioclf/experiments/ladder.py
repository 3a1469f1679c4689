"""The phase ladder of the reference reports in one command: queue every phase as a named DVC experiment,
run the queue, and write ``reports/phases.md`` from ``dvc exp show --json``.

    python -m audioclf.ladder                      # every phase once, on the workspace params
    python -m audioclf.ladder --seeds 3            # each phase with train.seed s, s+1, s+2: mean ± std
    python -m audioclf.ladder --seeds 3 --vary split   # ... seed (data, split) and train.seed together
    python -m audioclf.ladder --set train.epochs=5 --phases baseline,cnnv2-focal
    python -m audioclf.ladder --dry-run            # print the plan and the reasons for skips

Phases are in :mod:`audioclf.experiments.phases`. One whose params do not validate here, or whose
pretrained weights are not on this machine, is listed as skipped with the reason (not queued). Every phase that ran is compared with the
baseline on the same test files (:mod:`audioclf.experiments.phase_pairs`): run i of a
phase against the baseline's run i, which shares its data, split and ``train.seed``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audioclf.cli import command
from audioclf.errors import UserError
from audioclf.experiments import dvc_exps
from audioclf.experiments.columns import metric_values
from audioclf.experiments.phase_pairs import compare_with_baseline
from audioclf.experiments.phase_report import PhaseResult, describe_seeds, report
from audioclf.experiments.phases import PHASES, Phase, apply_overrides, check_phase
from audioclf.io import atomic_path

log = logging.getLogger(__name__)


class LadderError(UserError, RuntimeError):
    """The ladder cannot start: a name is taken, or the queue holds other experiments."""


@dataclass
class PlannedPhase:
    """A phase with its verdict: ``runs`` (experiment name -> overrides) if it can run, else
    ``reason``; ``seeds``: experiment name -> the seed it varies (None: one run, no override)."""

    phase: Phase
    reason: str | None = None
    selected: bool = True
    runs: dict[str, list[str]] = field(default_factory=dict)
    seeds: dict[str, int | None] = field(default_factory=dict)


# what --seeds varies: train.seed alone (same data and split), or seed too (data, split, training)
VARY = ("train", "split")


def seed_overrides(vary: str, seed: int) -> list[str]:
    """The overrides of one seeded run.

    >>> seed_overrides("train", 43), seed_overrides("split", 43)
    (['train.seed=43'], ['seed=43', 'train.seed=43'])
    """
    return [f"train.seed={seed}"] if vary == "train" else [f"seed={seed}", f"train.seed={seed}"]


def first_seed(raw: dict, vary: str) -> int:
    """The first seed of a series: the params' ``train.seed`` (else ``seed``), or ``seed`` for split."""
    train_seed = (raw.get("train") or {}).get("seed")
    seed = raw.get("seed") if vary == "split" or train_seed is None else train_seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"params.yaml's seed is not an integer (got {seed!r})")
    return seed


def plan(
    raw: dict,
    phases: tuple[Phase, ...] | list[Phase] = PHASES,
    *,
    extra: list[str] = (),
    seeds: int = 1,
    vary: str = "train",
    only: list[str] | None = None,
    tag: str = "",
) -> list[PlannedPhase]:
    """Check every phase against the params and name its runs.

    Args:
        raw: the workspace params (params.yaml as read).
        phases: the ladder.
        extra: ``key=value`` overrides applied to every phase, after its own.
        seeds: runs per phase; with more than one, run i sets the seeds of
            :func:`seed_overrides` to s + i (s: :func:`first_seed`).
        vary: ``train`` (``train.seed`` alone: the data and the split stay) or ``split``
            (``seed`` and ``train.seed``: the data, the split and the training change).
        only: names of the phases to run (None: all); the others are still checked.
        tag: appended to experiment names (``baseline-<tag>``), to keep an earlier ladder.

    Raises:
        ValueError: ``extra`` or ``vary`` is invalid for the workspace params, or an
            unknown phase is named in ``only``.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if vary not in VARY:
        raise ValueError(f"vary must be one of {', '.join(VARY)}, got {vary!r}")
    unknown = sorted(set(only or ()) - {p.name for p in phases})
    if unknown:
        raise ValueError(f"unknown phase(s) {unknown}; phases: {', '.join(p.name for p in phases)}")
    problem = check_phase(raw, list(extra))
    if problem:
        raise ValueError(f"--set: {problem}")
    start = first_seed(apply_overrides(raw, list(extra)), vary)
    series = list(range(start, start + seeds)) if seeds > 1 else [None]
    planned = []
    for phase in phases:
        overrides = [*phase.overrides, *extra]
        check = overrides + (seed_overrides(vary, start) if seeds > 1 else [])
        item = PlannedPhase(phase, check_phase(raw, check), only is None or phase.name in only)
        if item.reason is None and item.selected:
            for seed in series:
                name = phase.name + (f"-{tag}" if tag else "") + (f"-s{seed}" if seed else "")
                item.runs[name] = overrides + (seed_overrides(vary, seed) if seed else [])
                item.seeds[name] = seed
        planned.append(item)
    return planned


def execute(
    planned: list[PlannedPhase], root: Path, *, jobs: int = 1, force: bool = False
) -> dict[str, dict]:
    """Queue every run, run the queue, and read the results back.

    Returns:
        experiment name -> ``{"metrics", "params"}`` or ``{"error"}`` (with the log's reason).
    """
    names = [name for item in planned for name in item.runs]
    if not names:
        return {}
    taken, tasks = dvc_exps.conflicts(names, root)
    if (taken or tasks) and not force:
        raise LadderError(
            f"experiment name(s) already used on this commit: {', '.join(taken + tasks)}; pass --force "
            f"to replace them or --tag to name this ladder differently"
        )
    dvc_exps.remove(taken, tasks, root)
    waiting = [
        t["name"] for t in dvc_exps.queue_tasks(root) if t["status"] in ("Queued", "Running")
    ]
    if waiting:
        raise LadderError(
            f"the DVC queue already holds experiments {waiting}, which the ladder would run too; "
            f"run them (dvc queue start) or remove them (dvc queue remove --queued) first"
        )
    base = dvc_exps.head(root)  # the experiments' baseline, wherever HEAD is when they end
    for item in planned:
        for name, overrides in item.runs.items():
            dvc_exps.dvc(dvc_exps.queue_command(name, overrides), root)
    dvc_exps.run_queue(root, jobs)
    return read_back(names, root, base)


def read_back(names: list[str], root: Path, base: str) -> dict[str, dict]:
    """The named experiments of baseline commit ``base``, a failed one with its log's reason."""
    if dvc_exps.head(root) != base:
        log.warning("ladder: HEAD moved while it ran; reading the experiments of %s", base[:7])
    found = dvc_exps.collect(dvc_exps.show(root, base), names)
    for name in names:
        if "error" in found.get(name, {"error": None}):
            found[name] = {"error": dvc_exps.failure_reason(name, root)}
    return found


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
            result.status = "failed" if not result.experiments else "ran"
            result.note = f"{len(failures)} of {len(item.runs)} run(s) failed: " + "; ".join(
                failures
            )
        results.append(result)
    return results


def write(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--params", default="params.yaml", help="the params the phases start from")
    ap.add_argument("--out", default="reports/phases.md", help="the report (markdown)")
    ap.add_argument("--seeds", type=int, default=1, help="runs per phase (seeds s, s+1, ...)")
    ap.add_argument(
        "--vary",
        choices=VARY,
        default="train",
        help="train: vary train.seed only (same data and split; default); split: seed too",
    )
    ap.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override applied to every phase (repeatable), e.g. --set train.epochs=3",
    )
    ap.add_argument(
        "--phases", help="comma-separated phases to run (the others are still checked and listed)"
    )
    ap.add_argument("--tag", default="", help="experiment names' suffix (keeps an earlier ladder)")
    ap.add_argument(
        "--force", action="store_true", help="replace experiments that already have these names"
    )
    ap.add_argument("--jobs", type=int, default=1, help="experiments run at once")
    ap.add_argument(
        "--dry-run", action="store_true", help="print the plan and the skips; queue nothing"
    )
    ap.add_argument(
        "--read-back",
        metavar="COMMIT",
        help="queue nothing: report the experiments these phases already ran from COMMIT",
    )
    args = ap.parse_args(argv)
    raw = yaml.safe_load(Path(args.params).read_text())
    try:
        planned = plan(
            raw,
            extra=args.extra,
            seeds=args.seeds,
            vary=args.vary,
            tag=args.tag,
            only=args.phases.split(",") if args.phases else None,
        )
    except ValueError as err:
        ap.error(str(err))
    for item in planned:
        verdict = item.reason or (
            "not selected" if not item.selected else f"{len(item.runs)} run(s)"
        )
        log.info("%s: %s", item.phase.name, verdict)
        for name, overrides in item.runs.items():
            log.info("    %s", shlex.join(["dvc", *dvc_exps.queue_command(name, overrides)]))
    if args.dry_run:
        return {"planned": planned}
    if args.read_back:  # the experiments of an earlier run of these phases, queued from that commit
        names = [name for item in planned for name in item.runs]
        found = read_back(names, Path.cwd(), args.read_back)
    else:
        found = execute(planned, Path.cwd(), jobs=args.jobs, force=args.force)
    results = summarise(planned, found)
    seeds = {item.phase.name: item.seeds for item in planned}
    revs = {name: out.get("rev") or name for name, out in found.items()}
    ran = apply_overrides(raw, args.extra)  # the params every phase shares: evaluate.*, seed
    cfg = compare_with_baseline(results, seeds, revs, ran, Path.cwd(), baseline=PHASES[0].name)
    words = ["python", "-m", "audioclf.ladder", *(argv if argv is not None else sys.argv[1:])]
    text = report(
        results,
        [(i.phase.name, i.phase.overrides, list(i.runs)) for i in planned],
        raw,
        command=shlex.join(words),
        seeds=describe_seeds(
            sorted({s for d in seeds.values() for s in d.values() if s}), args.vary
        ),
        baseline=PHASES[0].name,
        level=cfg.ci_level,
        n_boot=cfg.bootstrap,
        commit=args.read_back or "HEAD",
    )
    write(text, args.out)
    log.info("ladder: wrote %s", args.out)
    return {"planned": planned, "results": results, "out": args.out}


if __name__ == "__main__":
    command(main)
