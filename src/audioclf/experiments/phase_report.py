"""``reports/phases.md``: one row per phase, each metric as mean ± std over seeds and its
difference from the baseline phase, skipped and failed phases with their reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# (column, path in reports/metrics.json); ECE is the one where lower is better
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accuracy", ("test", "accuracy")),
    ("UAR", ("test", "balanced_accuracy")),
    ("macro-F1", ("test", "macro_f1")),
    ("weighted-F1", ("test", "weighted_f1")),
    ("mAP", ("test", "macro_map")),
    ("ROC-AUC", ("test", "macro_auc")),
    ("top-5", ("test", "top5_accuracy")),
    ("ECE ↓", ("test", "ece")),
    ("head F1", ("buckets", "head", "macro_f1")),
    ("mid F1", ("buckets", "mid", "macro_f1")),
    ("tail F1", ("buckets", "tail", "macro_f1")),
)


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
    values: dict[str, list[float]] = field(
        default_factory=dict
    )  # column -> one value per successful run
    transductive: bool = False  # its inputs were normalised per group, test groups' files included


def metric_values(metrics: dict) -> dict[str, float]:
    """The table's columns present in one experiment's metrics.json (a bucket without test items is absent).

    >>> metric_values({"test": {"accuracy": 0.5}, "buckets": {"tail": {"classes": 0}}})
    {'accuracy': 0.5}
    """
    out = {}
    for column, path in METRICS:
        node = metrics
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            out[column] = float(node)
    return out


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value).

    >>> mean_std([0.5, 0.7])
    (0.6, 0.1414)
    """
    mean = float(np.mean(values))
    return round(mean, 4), (round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None)


def _cell(values: list[float], baseline: list[float] | None) -> str:
    """``52.4 ± 1.2 (+3.1)`` in percent: mean ± std over seeds, difference of means from the baseline."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    text = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")
    if baseline:
        delta = 100 * (mean - np.mean(baseline))
        text += f" ({delta:+.1f})"
    return text


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(results: list[PhaseResult], *, baseline: str, header: list[str]) -> str:
    """The markdown report: ``header`` lines, the table, then each phase's overrides.

    Args:
        results: one per phase, in ladder order.
        baseline: name of the phase the differences are taken against.
        header: lines under the title (dataset, commit, command, ...).
    """
    base = next((r for r in results if r.name == baseline and r.status == "ran"), None)
    columns = [c for c, _ in METRICS]
    lines = ["# Phase ladder", "", *header, ""]
    if base is None:
        lines += [f"The baseline phase `{baseline}` did not run, so no differences are shown.", ""]
    lines += [
        "| phase | runs | " + " | ".join(columns) + " | status |",
        "|---|---|" + "---:|" * len(columns) + "---|",
    ]
    for r in results:
        ref = None if base is None or r is base else base.values
        cells = [_cell(r.values.get(c, []), ref.get(c) if ref else None) for c in columns]
        status = r.status + (f": {_escape(r.note)}" if r.note else "")
        runs = str(len(r.experiments)) if r.experiments else "–"
        mark = " †" if r.transductive else ""
        lines.append(
            f"| {_escape(r.title)} (`{r.name}`){mark} | {runs} | "
            + " | ".join(cells)
            + f" | {status} |"
        )
    if any(r.transductive for r in results):
        lines += ["", TRANSDUCTIVE_NOTE]
    return "\n".join(lines) + "\n"
