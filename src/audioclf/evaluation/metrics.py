"""Classification metrics over class-probability predictions."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

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


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes in ``y_true`` (UAR); predicted-only classes do not count."""
    with warnings.catch_warnings():
        # scikit-learn warns, then drops them, exactly as intended here
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int = TOP_K) -> float:
    """Fraction of items whose true class is among the ``k`` highest scores (1 when C <= k)."""
    if probs.shape[1] <= k:
        return 1.0
    return float(top_k_accuracy_score(y_true, probs, k=k, labels=np.arange(probs.shape[1])))


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], *, ece_bins: int = 15
) -> dict:
    """Headline and per-class metrics; the reference the fast bootstrap path is tested against.

    F1 averages run over the classes present in ``y_true`` or predicted (scikit-learn's
    convention); balanced accuracy (UAR) is the mean recall over the classes in
    ``y_true``; mAP and ROC-AUC average one-vs-rest scores over the classes present in
    ``y_true`` (both are undefined for a class with no positives); top-5 accuracy is 1
    by definition with 5 classes or fewer; ECE is top-label, over ``ece_bins``
    equal-width bins (:mod:`audioclf.evaluation.calibration`).

    Args:
        y_true: (N,) true class indices, at least two distinct.
        probs: (N, C) class probabilities; argmax is the prediction.
        labels: the C class names.
        ece_bins: bins of the expected calibration error.

    Returns:
        the :data:`HEADLINE` metrics, ``n`` and ``per_class`` (name -> precision,
        recall, f1, support).

    >>> m = classification_metrics(np.array([0, 1, 1]), np.array([[.9, .1], [.4, .6], [.7, .3]]), ["a", "b"])
    >>> round(m["accuracy"], 4), round(m["macro_f1"], 4), m["macro_map"]
    (0.6667, 0.6667, 1.0)
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    _validate(y_true, probs, len(labels))
    y_pred = probs.argmax(axis=1)
    present = np.unique(np.concatenate([y_true, y_pred]))
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(labels)), zero_division=0
    )
    true_classes = np.unique(y_true)
    aps = [average_precision_score(y_true == c, probs[:, c]) for c in true_classes]
    aucs = [roc_auc_score(y_true == c, probs[:, c]) for c in true_classes]
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)
        ),
        "macro_map": float(np.mean(aps)),
        "macro_auc": float(np.mean(aucs)),
        "top5_accuracy": top_k_accuracy(y_true, probs),
        "ece": expected_calibration_error(y_true, probs, ece_bins),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(labels)
        },
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
