"""Uncertainty of test metrics: mean ± std over folds and bootstrap confidence intervals.

The bootstrap resamples test *files* with replacement and recomputes the headline
metrics each time, so it needs them fast: :func:`headline` computes every metric of
:data:`audioclf.evaluation.metrics.HEADLINE` (and the head/mid/tail macro-F1) in numpy, equal to
the scikit-learn-based :func:`audioclf.evaluation.metrics.classification_metrics` (tested).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from audioclf.evaluation.buckets import bucket_f1
from audioclf.evaluation.calibration import expected_calibration_error
from audioclf.evaluation.metrics import TOP_K


def average_precisions(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of each column: scikit-learn's definition (precision summed over
    recall steps; tied scores form one threshold), all columns in one sort.

    Args:
        positive: (N, K) binary labels, each column with at least one positive.
        scores: (N, K) scores.

    Returns:
        (K,) average precisions.
    """
    n, k = scores.shape
    order = np.argsort(-scores, axis=0, kind="mergesort")  # (N, K) descending per column
    s = np.take_along_axis(scores, order, axis=0)
    y = np.take_along_axis(positive, order, axis=0).astype(float)
    last = np.ones((n, k), dtype=bool)  # last item of each run of tied scores
    last[:-1] = s[:-1] != s[1:]
    group = np.zeros((n, k), dtype=np.int64)  # tie-run index within each column
    group[1:] = np.cumsum(last[:-1], axis=0)
    flat = group + np.arange(k)[None, :] * n  # unique over columns
    gain = np.bincount(
        flat.ravel(), weights=y.ravel(), minlength=n * k
    )  # positives per run: the recall step
    precision = np.cumsum(y, axis=0) / np.arange(1, n + 1)[:, None]  # precision after each item
    at_run_end = np.zeros(n * k)
    at_run_end[flat[last]] = precision[last]
    return (gain * at_run_end).reshape(k, n).sum(axis=1) / y.sum(axis=0)


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision of binary labels ``y`` ranked by ``score`` (one column of :func:`average_precisions`)."""
    return float(
        average_precisions(np.asarray(y)[:, None], np.asarray(score, dtype=float)[:, None])[0]
    )


def macro_auc(y_true: np.ndarray, probs: np.ndarray, classes: np.ndarray) -> float:
    """Mean one-vs-rest ROC-AUC over ``classes`` (each with positives and negatives), by the
    Mann-Whitney rank sum with tied scores at their mean rank, as scikit-learn's trapezoids give."""
    n = len(y_true)
    ranks = rankdata(probs[:, classes], axis=0)  # (N, K) ranks within each class column
    pos = y_true[:, None] == classes[None, :]  # (N, K)
    n_pos = pos.sum(axis=0)
    rank_sum = (ranks * pos).sum(axis=0)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
    return float(auc.mean())


def top_k_hits(y_true: np.ndarray, probs: np.ndarray, k: int = TOP_K) -> float:
    """Top-k accuracy; ties ordered as scikit-learn's ``top_k_accuracy_score`` orders them."""
    if probs.shape[1] <= k:
        return 1.0
    top = np.argsort(probs, axis=1, kind="mergesort")[:, ::-1][:, :k]  # (N, k)
    return float((top == y_true[:, None]).any(axis=1).mean())


def headline(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    ece_bins: int = 15,
    bucket_of: np.ndarray | None = None,
) -> dict[str, float]:
    """The headline metrics, and with ``bucket_of`` each bucket's macro-F1, in numpy.

    Accuracy, balanced accuracy (mean recall over true classes), macro-/weighted-F1
    (over classes true or predicted), macro mAP and ROC-AUC (over true classes),
    top-5 accuracy and ECE, each equal to :func:`audioclf.evaluation.metrics.classification_metrics`.

    Args:
        y_true: (N,) class indices, at least two distinct.
        probs: (N, C) class probabilities.
        ece_bins: bins of the expected calibration error.
        bucket_of: (C,) bucket name of each class (:func:`audioclf.evaluation.buckets.assign_buckets`).

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
    out = {
        "accuracy": float(tp.sum() / len(y_true)),
        "balanced_accuracy": float((tp[classes] / support[classes]).mean()),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "macro_map": float(
            average_precisions(y_true[:, None] == classes[None, :], probs[:, classes]).mean()
        ),
        "macro_auc": macro_auc(y_true, probs, classes),
        "top5_accuracy": top_k_hits(y_true, probs),
        "ece": expected_calibration_error(y_true, probs, ece_bins),
    }
    if bucket_of is not None:
        out.update(bucket_f1(f1, support, bucket_of))
    return out


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ece_bins: int = 15,
    bucket_of: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Percentile bootstrap interval of each :func:`headline` metric, resampling items with replacement.

    A resample holding a single class (ROC-AUC undefined; only likely with a handful of
    items) is drawn again. A bucket's interval uses the resamples in which the bucket
    has test items; a bucket absent from the data has no interval.

    Args:
        y_true: (N,) class indices, at least two distinct.
        probs: (N, C) class probabilities.
        n_boot: resamples.
        level: coverage of the interval.
        seed: makes the interval reproducible.
        ece_bins: bins of the expected calibration error.
        bucket_of: (C,) bucket of each class, to add ``<bucket>_macro_f1`` intervals.

    Returns:
        metric -> [low, high].
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if len(np.unique(y_true)) < 2:
        raise ValueError("the bootstrap needs at least two classes in y_true")
    rng = np.random.default_rng(seed)
    n = len(y_true)
    samples: dict[str, list[float]] = {}
    done = 0
    while done < n_boot:
        idx = rng.integers(0, n, n)
        if np.all(y_true[idx] == y_true[idx[0]]):
            continue
        for m, v in headline(
            y_true[idx], probs[idx], ece_bins=ece_bins, bucket_of=bucket_of
        ).items():
            samples.setdefault(m, []).append(v)
        done += 1
    present = headline(y_true, probs, ece_bins=ece_bins, bucket_of=bucket_of)
    tail = (1 - level) / 2 * 100
    return {
        m: [float(np.percentile(samples[m], tail)), float(np.percentile(samples[m], 100 - tail))]
        for m in present
        if m in samples
    }


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
