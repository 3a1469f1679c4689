"""Classification metrics over class-probability predictions: one implementation of each.

Every metric is computed here in numpy, all classes at once, because the bootstrap intervals
(:mod:`audioclf.evaluation.bootstrap`) and the comparisons of runs
(:mod:`audioclf.evaluation.paired`) recompute them on a thousand resamples, where scikit-learn's
one call per class and metric would take most of the evaluate stage. Each follows
scikit-learn's definition, tied scores included, and the tests hold it equal to
``average_precision_score``, ``roc_auc_score``, ``top_k_accuracy_score``, ``f1_score``,
``balanced_accuracy_score`` and ``precision_recall_fscore_support`` to 1e-12.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.stats import rankdata

from audioclf.evaluation.buckets import bucket_f1
from audioclf.evaluation.calibration import expected_calibration_error

HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "weighted_f1",
    "macro_map",
    "macro_auc",
    "top5_accuracy",
    "ece",
)
TOP_K = 5


def _validate(y_true: np.ndarray, probs: np.ndarray, n_labels: int) -> None:
    if probs.ndim != 2 or probs.shape[1] != n_labels:
        raise ValueError(f"probs must have shape (N, {n_labels}), got {probs.shape}")
    if len(y_true) != len(probs):
        raise ValueError(f"y_true has {len(y_true)} items but probs has {len(probs)} rows")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero items")
    if y_true.min() < 0 or y_true.max() >= n_labels:
        raise ValueError(f"y_true holds class indices outside [0, {n_labels})")
    if len(np.unique(y_true)) < 2:
        raise ValueError(
            f"y_true holds a single class ({int(y_true[0])}); ROC-AUC needs at least two"
        )


def average_precisions(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of each column (scikit-learn's: precision summed over recall steps,
    tied scores forming one threshold), all columns in one sort.

    Args:
        positive: (N, K) binary labels, each column with at least one positive.
        scores: (N, K) scores.

    Returns:
        (K,) average precisions.

    >>> average_precisions(np.array([[1], [0], [1]]), np.array([[0.9], [0.8], [0.7]]))
    array([0.83333333])
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
    # positives per run of ties: the recall step taken at its threshold
    gain = np.bincount(flat.ravel(), weights=y.ravel(), minlength=n * k)
    precision = np.cumsum(y, axis=0) / np.arange(1, n + 1)[:, None]  # after each item
    at_run_end = np.zeros(n * k)
    at_run_end[flat[last]] = precision[last]
    return (gain * at_run_end).reshape(k, n).sum(axis=1) / y.sum(axis=0)


def roc_aucs(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC-AUC of each column by the Mann-Whitney rank sum, tied scores at their mean rank (the
    area under scikit-learn's trapezoids).

    Args:
        positive: (N, K) binary labels, each column with positives and negatives.
        scores: (N, K) scores.

    Returns:
        (K,) areas under the ROC curve.

    >>> roc_aucs(np.array([[1], [0], [1], [0]]), np.array([[0.9], [0.8], [0.7], [0.1]]))
    array([0.75])
    """
    ranks = rankdata(scores, axis=0)  # (N, K) ranks within each column
    n_pos = positive.sum(axis=0)
    n_neg = len(positive) - n_pos
    return ((ranks * positive).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int = TOP_K) -> float:
    """Fraction of items whose true class is among the ``k`` highest scores (1 when C <= k);
    tied scores are ordered as scikit-learn's ``top_k_accuracy_score`` orders them."""
    if probs.shape[1] <= k:
        return 1.0
    top = np.argsort(probs, axis=1, kind="mergesort")[:, ::-1][:, :k]  # (N, k)
    return float((top == y_true[:, None]).any(axis=1).mean())


def _counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """(C,) true positives, true items (support) and predicted items of each class."""
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(float)
    support = np.bincount(y_true, minlength=n_classes).astype(float)
    predicted = np.bincount(y_pred, minlength=n_classes).astype(float)
    return tp, support, predicted


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


def headline(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    ece_bins: int = 15,
    bucket_of: np.ndarray | None = None,
) -> dict[str, float]:
    """The :data:`HEADLINE` metrics, and with ``bucket_of`` each bucket's macro-F1.

    F1 averages run over the classes true or predicted (scikit-learn's convention); balanced
    accuracy (UAR) is the mean recall over the true classes; mAP and ROC-AUC average one-vs-rest
    scores over the true classes (both are undefined for a class with no positives); top-5
    accuracy is 1 by definition with 5 classes or fewer; ECE is top-label, over ``ece_bins``
    equal-width bins (:mod:`audioclf.evaluation.calibration`). Inputs are not checked here (the
    bootstrap calls it a thousand times): :func:`classification_metrics` does.

    Args:
        y_true: (N,) class indices, at least two distinct.
        probs: (N, C) class probabilities; argmax is the prediction.
        ece_bins: bins of the expected calibration error.
        bucket_of: (C,) bucket name of each class (:func:`audioclf.evaluation.buckets.assign_buckets`).

    >>> m = headline(np.array([0, 1, 1]), np.array([[.9, .1], [.4, .6], [.7, .3]]))
    >>> round(m["accuracy"], 4), round(m["macro_f1"], 4), m["macro_map"]
    (0.6667, 0.6667, 1.0)
    """
    tp, support, predicted = _counts(y_true, probs.argmax(axis=1), probs.shape[1])
    f1 = _ratio(2 * tp, support + predicted)
    classes = np.flatnonzero(support)  # the true classes
    positive = y_true[:, None] == classes[None, :]  # (N, K)
    out = {
        "accuracy": float(tp.sum() / len(y_true)),
        "balanced_accuracy": float((tp[classes] / support[classes]).mean()),
        "macro_f1": float(f1[support + predicted > 0].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "macro_map": float(average_precisions(positive, probs[:, classes]).mean()),
        "macro_auc": float(roc_aucs(positive, probs[:, classes]).mean()),
        "top5_accuracy": top_k_accuracy(y_true, probs),
        "ece": expected_calibration_error(y_true, probs, ece_bins),
    }
    if bucket_of is not None:
        out.update(bucket_f1(f1, support, bucket_of))
    return out


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], *, ece_bins: int = 15
) -> dict:
    """The :func:`headline` metrics of checked inputs, the number of items and per-class scores.

    Args:
        y_true: (N,) true class indices, at least two distinct.
        probs: (N, C) class probabilities; argmax is the prediction.
        labels: the C class names.
        ece_bins: bins of the expected calibration error.

    Returns:
        the :data:`HEADLINE` metrics, ``n`` and ``per_class`` (name -> precision, recall, f1,
        support; 0 where undefined).

    Raises:
        ValueError: shapes that disagree, class indices out of range, or a single true class.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    _validate(y_true, probs, len(labels))
    tp, support, predicted = _counts(y_true, probs.argmax(axis=1), len(labels))
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }
    return {
        "n": int(len(y_true)),
        **headline(y_true, probs, ece_bins=ece_bins),
        "per_class": per_class,
    }


def aggregate_by_file(
    probs: np.ndarray, y: np.ndarray, paths: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Average segment probabilities per file, so a long recording counts once.

    Returns:
        (F, C) mean probabilities, (F,) labels, the F paths in first-seen order.
    """
    rows: dict[str, list[int]] = defaultdict(list)
    for i, path in enumerate(paths):
        rows[path].append(i)
    files = list(rows)
    return (
        np.stack([probs[rows[f]].mean(axis=0) for f in files]),
        np.array([y[rows[f][0]] for f in files]),
        files,
    )
