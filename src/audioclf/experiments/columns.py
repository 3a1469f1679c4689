"""The columns of the reports: which metrics, where metrics.json holds them, and how numbers read.

Shared by ``reports/phases.md``, ``audioclf compare`` and ``audioclf report``, so a metric
has one name and one format everywhere.
"""

from __future__ import annotations

import numpy as np

from audioclf.evaluation.paired import Difference

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
# the columns of the comparison table (the reference reports' headline numbers)
COMPARED = ("accuracy", "UAR", "macro-F1", "mAP", "tail F1")


def headline_key(path: tuple[str, ...]) -> str:
    """The key of a metrics.json path among the bootstrap's metrics.

    >>> headline_key(("test", "macro_f1")), headline_key(("buckets", "tail", "macro_f1"))
    ('macro_f1', 'tail_macro_f1')
    """
    return path[1] if path[0] == "test" else f"{path[1]}_{path[2]}"


def points(x: float) -> str:
    """A difference of fractions in percentage points, signed.

    >>> points(0.052), points(-0.0684), points(0.0)
    ('+5.2', '-6.8', '+0.0')
    """
    return f"{100 * x:+.1f}"


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


def interval_cell(d: Difference) -> str:
    """``+3.4 [-1.4, +8.2]`` in points; bold when the interval excludes zero.

    >>> interval_cell(Difference(.5, .56, .06, .01, .11))
    '**+6.0 [+1.0, +11.0]**'
    """
    text = f"{points(d.diff)} [{points(d.low)}, {points(d.high)}]"
    return f"**{text}**" if d.significant else text
