"""Each phase of the ladder against its baseline, on the same test files.

Run i of a phase is compared with the baseline's run of the same seed (the same data
and split, so the same test files, unless the phase changes the split): a paired
bootstrap of every metric's difference and McNemar's exact test
(:func:`audioclf.evaluation.paired.compare_runs`). With one seed the phase's difference
is that pair's; over several it is the mean of the per-run differences with two
intervals (:mod:`audioclf.evaluation.seeds`): Student's t across the seeds (training
noise) and a bootstrap of the shared test files (sampling noise); it is significant
only when both exclude zero. A phase whose test files differ from the baseline's (the
leaky split) is compared unpaired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audioclf.config.evaluation import EvaluateConfig
from audioclf.config.schema import build
from audioclf.errors import UserError
from audioclf.evaluation.paired import Comparison, Difference, compare_runs
from audioclf.evaluation.seeds import across_seeds, files_bootstrap
from audioclf.experiments.runs import RunFiles

log = logging.getLogger(__name__)


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
    :class:`Comparison`, and per metric the phase's :class:`PhaseDifference`. ``note`` says
    why some or all pairs are missing."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    per_run: list[Comparison] = field(default_factory=list)
    combined: dict[str, PhaseDifference] = field(default_factory=dict)
    note: str = ""

    @property
    def paired(self) -> bool:
        return bool(self.per_run) and all(c.paired for c in self.per_run)


def compare_phase(
    pairs: list[tuple[str, str]],
    files: Callable[[str], RunFiles],
    *,
    n_boot: int,
    level: float,
    seed: int,
    ece_bins: int,
) -> PhaseComparison:
    """Compare each (baseline run, phase run) pair by their files (``files(name)``)."""
    out = PhaseComparison()
    problems, loaded, buckets = [], [], []
    for base_name, name in pairs:
        base, run = files(base_name), files(name)
        try:
            pa, pb = base.predictions(), run.predictions()
            comparison = compare_runs(
                pa,
                pb,
                n_boot=n_boot,
                level=level,
                seed=seed,
                ece_bins=ece_bins,
                bucket_of_a=base.bucket_of(pa.labels),
                bucket_of_b=run.bucket_of(pb.labels),
            )
        except UserError as err:
            problems.append(f"{name}: {err}")
            continue
        out.pairs.append((base_name, name))
        out.per_run.append(comparison)
        loaded.append((pa, pb))
        buckets.append((base.bucket_of(pa.labels), run.bucket_of(pb.labels)))
    if len(out.per_run) == 1:
        out.combined = {k: PhaseDifference(d) for k, d in out.per_run[0].differences.items()}
    elif out.per_run:
        pooled = files_bootstrap(
            loaded, n_boot=n_boot, level=level, seed=seed, ece_bins=ece_bins, bucket_of=buckets
        )
        out.combined = {
            k: PhaseDifference(d, across_seeds([c.differences[k] for c in out.per_run], level))
            for k, d in pooled.items()
            if all(k in c.differences for c in out.per_run)
        }
    if problems:
        out.note = f"{len(problems)} of {len(pairs)} comparison(s) failed: " + "; ".join(problems)
    return out


def compare_with_baseline(
    results: list,
    seeds: dict[str, dict[str, int | None]],
    revs: dict[str, str],
    raw: dict,
    root: Path,
    *,
    baseline: str,
) -> EvaluateConfig:
    """Compare every phase that ran with the baseline's run of the same seed.

    Args:
        results: the ladder's :class:`~audioclf.experiments.phase_report.PhaseResult` list;
            each one that ran, other than the baseline, gets its ``comparison``.
        seeds: phase -> experiment name -> its seed (None: a single run).
        revs: experiment name -> the git revision holding its files.
        raw: the workspace params: the statistics follow its ``evaluate`` and ``seed``.
        root: the repository.
        baseline: the baseline phase's name.

    Returns:
        the ``evaluate`` params used (resamples, level).
    """
    cfg = build(EvaluateConfig, raw.get("evaluate"), "evaluate")
    base = next((r for r in results if r.name == baseline and r.status == "ran"), None)
    if base is None:
        return cfg
    by_seed = {seeds[baseline][n]: n for n in base.experiments}

    def files(name: str) -> RunFiles:
        return RunFiles(revs.get(name, name), root)

    for r in results:
        if r is base or r.status != "ran":
            continue
        pairs = [
            (by_seed[seeds[r.name][n]], n) for n in r.experiments if seeds[r.name][n] in by_seed
        ]
        log.info("ladder: comparing %s with %s (%d run(s))", r.name, baseline, len(pairs))
        r.comparison = compare_phase(
            pairs,
            files,
            n_boot=cfg.bootstrap,
            level=cfg.ci_level,
            seed=raw.get("seed", 0),
            ece_bins=cfg.ece_bins,
        )
        if len(pairs) < len(r.experiments):
            missing = (
                f"{len(r.experiments) - len(pairs)} run(s) without a baseline run of the same seed"
            )
            r.comparison.note = "; ".join(filter(None, [r.comparison.note, missing]))
    return cfg
