"""Uncertainty of test metrics: mean ± std over folds and bootstrap confidence intervals.

The bootstrap resamples test *files* with replacement and recomputes the headline
metrics each time, so it needs them fast: :func:`headline` computes accuracy, macro-
and weighted-F1 and macro mAP in numpy, equal to :func:`audioclf.metrics.classification_metrics`.
"""
from __future__ import annotations

import numpy as np

from audioclf.metrics import HEADLINE


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision of binary labels ``y`` ranked by ``score``; scikit-learn's definition
    (precision summed over recall steps, tied scores form one threshold)."""
    order = np.argsort(-score, kind="mergesort")
    y, score = y[order], score[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def headline(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-/weighted-F1 (over classes true or predicted) and macro mAP (over true classes).

    >>> headline(np.array([0, 1, 1]), np.array([[.9, .1], [.4, .6], [.7, .3]]))["macro_map"]
    1.0
    """
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(float)
    support = np.bincount(y_true, minlength=n_classes).astype(float)
    predicted = np.bincount(y_pred, minlength=n_classes).astype(float)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    present = denom > 0
    classes = np.flatnonzero(support)
    return {
        "accuracy": float(tp.sum() / len(y_true)),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "macro_map": float(np.mean([average_precision(y_true == c, probs[:, c]) for c in classes])),
    }


def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, *, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap interval of each headline metric, resampling items with replacement.

    Args:
        y_true: (N,) class indices.
        probs: (N, C) class scores.
        n_boot: resamples.
        level: coverage of the interval.
        seed: makes the interval reproducible.

    Returns:
        metric -> [low, high].
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n = len(y_true)
    samples = {m: [] for m in HEADLINE}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for m, v in headline(y_true[idx], probs[idx]).items():
            samples[m].append(v)
    tail = (1 - level) / 2 * 100
    return {m: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for m, v in samples.items()}


def fold_summary(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0 for one fold) of each metric over folds.

    >>> fold_summary([{"acc": 0.5}, {"acc": 0.7}])
    {'acc': {'mean': 0.6, 'std': 0.1414}}
    """
    if not per_fold:
        raise ValueError("no folds to summarise")
    out = {}
    for metric in per_fold[0]:
        values = np.array([fold[metric] for fold in per_fold], dtype=float)
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        out[metric] = {"mean": round(float(values.mean()), 4), "std": round(float(std), 4)}
    return out
