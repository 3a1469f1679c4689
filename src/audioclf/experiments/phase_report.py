"""``reports/phases.md``: the phases' test metrics (mean ± std over seeds), then each phase
against the baseline on the same test files, every difference with its interval.

The metrics table holds values only: a difference between two runs means something
only next to its interval, so differences are in the comparison table, computed by
:mod:`audioclf.experiments.phase_pairs` and marked significant (bold) only when the
interval excludes zero at the stated level.
"""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass, field

from audioclf.experiments.columns import (
    COMPARED,
    METRICS,
    headline_key,
    interval_cell,
    mean_std,
    points,
)
from audioclf.experiments.phase_pairs import PhaseComparison, PhaseDifference

TRANSDUCTIVE_NOTE = (
    "† `train.norm: group`: each group (speaker) standardised on its own files, the test "
    "groups' unlabelled files included (transductive); not comparable with a row without †."
)


@dataclass
class PhaseResult:
    """What happened to one phase: ``status`` is ran, failed, skipped or not selected."""

    name: str
    title: str
    status: str
    note: str = ""
    experiments: list[str] = field(default_factory=list)  # the runs that succeeded
    # column -> one value per successful run
    values: dict[str, list[float]] = field(default_factory=dict)
    comparison: PhaseComparison | None = None  # against the baseline (None: the baseline itself)
    transductive: bool = False  # its inputs were normalised per group, test groups' files included


def _cell(values: list[float]) -> str:
    """``52.4 ± 1.2`` in percent: mean ± sample std over seeds."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def phase_cell(d: PhaseDifference) -> str:
    """One run: ``+3.4 [-1.4, +8.2]``; several: the mean with the interval across seeds and the
    interval over the test files; bold when every interval excludes zero."""
    if d.seeds is None:
        return interval_cell(d.files)
    s, f = d.seeds, d.files
    text = (
        f"{points(d.diff)} (seeds [{points(s.low)}, {points(s.high)}]; "
        f"files [{points(f.low)}, {points(f.high)}])"
    )
    return f"**{text}**" if d.significant else text


def _mcnemar(comparisons) -> str:
    """Files only the baseline / only the phase gets right and p, per run; ``unpaired`` without."""
    if not comparisons:
        return "–"
    if any(c.mcnemar is None for c in comparisons):
        return "unpaired"
    if len(comparisons) == 1:
        m = comparisons[0].mcnemar
        return f"{m.only_a} / {m.only_b}, p = {m.p:.3g}"
    return "p = " + ", ".join(f"{c.mcnemar.p:.3g}" for c in comparisons)


def _keys(columns: tuple[str, ...]) -> list[tuple[str, str]]:
    paths = dict(METRICS)
    return [(column, headline_key(paths[column])) for column in columns]


def comparison_rows(results: list[PhaseResult]) -> list[str]:
    """The comparison table: one row per phase that was compared with the baseline."""
    keys = _keys(COMPARED)
    lines = [
        "| phase | runs | " + " | ".join(f"Δ {c}" for c, _ in keys) + " | McNemar | significant |",
        "|---|---|" + "---:|" * len(keys) + "---|---|",
    ]
    for r in results:
        c = r.comparison
        if c is None or r.status != "ran":
            continue
        cells = [phase_cell(c.combined[k]) if k in c.combined else "–" for _, k in keys]
        marked = [col for col, k in keys if k in c.combined and c.combined[k].significant]
        verdict = ", ".join(marked) or ("none" if c.combined else _escape(c.note) or "–")
        lines.append(
            f"| {_escape(r.title)} (`{r.name}`) | {len(c.per_run) or '–'} | "
            + " | ".join(cells)
            + f" | {_mcnemar(c.per_run)} | {verdict} |"
        )
    return lines


def per_run_rows(results: list[PhaseResult]) -> list[str]:
    """Each (phase run, baseline run) pair with its own paired interval and McNemar test."""
    keys = _keys(COMPARED)
    lines = [
        "| run | against | " + " | ".join(f"Δ {c}" for c, _ in keys) + " | McNemar |",
        "|---|---|" + "---:|" * len(keys) + "---|",
    ]
    for r in results:
        c = r.comparison
        for (base, name), comp in zip(c.pairs if c else [], c.per_run if c else [], strict=True):
            d = comp.differences
            cells = [interval_cell(d[k]) if k in d else "–" for _, k in keys]
            lines.append(
                f"| `{name}` | `{base}` | " + " | ".join(cells) + f" | {_mcnemar([comp])} |"
            )
    return lines


def render(results: list[PhaseResult], *, baseline: str, header: list[str]) -> str:
    """The metrics table: ``header`` lines, then one row per phase.

    Args:
        results: one per phase, in ladder order.
        baseline: name of the phase the others are compared with (marked in the table).
        header: lines under the title (dataset, commit, command, ...).
    """
    columns = [c for c, _ in METRICS]
    lines = ["# Phase ladder", "", *header, ""]
    lines += [
        "| phase | runs | " + " | ".join(columns) + " | status |",
        "|---|---|" + "---:|" * len(columns) + "---|",
    ]
    for r in results:
        cells = [_cell(r.values.get(c, [])) for c in columns]
        status = r.status + (f": {_escape(r.note)}" if r.note else "")
        runs = str(len(r.experiments)) if r.experiments else "–"
        mark = (" ← baseline" if r.name == baseline else "") + (" †" if r.transductive else "")
        lines.append(
            f"| {_escape(r.title)} (`{r.name}`){mark} | {runs} | "
            + " | ".join(cells)
            + f" | {status} |"
        )
    if any(r.transductive for r in results):
        lines += ["", TRANSDUCTIVE_NOTE]
    return "\n".join(lines) + "\n"


def describe_seeds(seeds: list[int], vary: str) -> str:
    """What the runs of each phase vary, for the report's header.

    >>> describe_seeds([], "train")
    "One run per phase, on the workspace's `seed` and `train.seed`."
    """
    if not seeds:
        return "One run per phase, on the workspace's `seed` and `train.seed`."
    listed = ", ".join(map(str, seeds))
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
    phases: list[tuple[str, tuple[str, ...], list[str]]],
    raw: dict,
    *,
    command: str,
    seeds: str,
    baseline: str,
    level: float,
    n_boot: int,
    commit: str = "HEAD",
) -> str:
    """phases.md: header, the metrics table, the comparison with the baseline, each run's
    comparison (with several seeds), then each phase's overrides and experiments.

    Args:
        results: one per phase, in ladder order (with their comparisons).
        phases: (name, overrides, experiment names) of every phase.
        raw: the workspace params.
        command: the command line that made the report.
        seeds: what the runs of a phase vary (:func:`describe_seeds`).
        baseline: the phase the others are compared with.
        level: coverage of the intervals; n_boot: resamples of the paired bootstrap.
        commit: the experiments' baseline commit.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--short", commit], capture_output=True, text=True
    ).stdout.strip()
    evaluate = raw.get("evaluate") or {}
    buckets = evaluate.get("buckets") or {}
    pct = f"{100 * level:g} %"
    header = [
        f"Dataset `{raw.get('dataset')}`, baseline commit `{commit or 'unknown'}`, "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}: `{command}`",
        "",
        seeds,
        "",
        "Test-set metrics in percent, mean ± sample std (ddof=1) over the runs. UAR: balanced "
        f"accuracy. ECE: calibration error over {evaluate.get('ece_bins', '?')} bins, lower is "
        f"better. head/mid/tail F1: macro-F1 over the classes with >= {buckets.get('head', '?')}, "
        f"between, and <= {buckets.get('tail', '?')} training clips; tail F1 is the reference "
        "reports' rare-species F1. Each run's own bootstrap intervals: `test_ci` in its "
        "reports/metrics.json (`dvc exp show`). –: not run, or no class of that bucket has test "
        "items.",
    ]
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
        render(results, baseline=baseline, header=header),
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
    for name, overrides, runs in phases:
        listed = ", ".join(f"`{n}`" for n in runs) or "none"
        lines.append(f"- `{name}`: `{' '.join(overrides) or '(none)'}`; experiments: {listed}")
    return "\n".join(lines) + "\n"
