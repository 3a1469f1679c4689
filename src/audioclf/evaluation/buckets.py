"""Head, mid and tail classes by training-set frequency, and macro-F1 within each.

Long-tailed datasets (bird species, ESC-50 subsets) hide their rare classes in a
macro average; the reference reports gave "rare species F1" separately. A class is *head*
with at least ``head`` training clips, *tail* with at most ``tail``, *mid* otherwise.
Counts come from ``reports/split.json`` (written by the split stage), so evaluation
never reads the training data itself. For cross-validation a class's count is its
mean over folds (stratified folds differ by a clip or two).
"""

from __future__ import annotations

import numpy as np

BUCKETS = ("head", "mid", "tail")


def training_counts(split_report: dict) -> dict[str, float]:
    """Mean training clips of each class over the folds of a split report.

    Args:
        split_report: ``reports/split.json``: ``{"folds": [{"per_class": {label: {"train": n, ...}}}]}``.

    Returns:
        class name -> count (a class missing from a fold counts 0 there).

    >>> training_counts({"folds": [{"per_class": {"a": {"train": 4}, "b": {"train": 1}}},
    ...                            {"per_class": {"a": {"train": 6}}}]})
    {'a': 5.0, 'b': 0.5}
    """
    folds = split_report.get("folds") if isinstance(split_report, dict) else None
    if not folds:
        raise ValueError(
            "the split report has no 'folds' with per-class counts (written by an older split stage?); "
            "rerun: dvc repro split"
        )
    labels = sorted({lab for fold in folds for lab in fold.get("per_class", {})})
    return {
        lab: float(np.mean([fold["per_class"].get(lab, {}).get("train", 0) for fold in folds]))
        for lab in labels
    }


def assign_buckets(counts: np.ndarray, *, head: int, tail: int) -> np.ndarray:
    """Bucket name of each class: ``head`` if count >= head, ``tail`` if count <= tail, else ``mid``.

    >>> assign_buckets(np.array([30, 20, 19, 6, 5, 0]), head=20, tail=5).tolist()
    ['head', 'head', 'mid', 'mid', 'tail', 'tail']
    """
    if not 0 <= tail < head:
        raise ValueError(f"bucket thresholds need 0 <= tail < head, got head={head}, tail={tail}")
    counts = np.asarray(counts, dtype=float)
    return np.where(counts >= head, "head", np.where(counts <= tail, "tail", "mid"))


def bucket_f1(f1: np.ndarray, support: np.ndarray, bucket_of: np.ndarray) -> dict[str, float]:
    """Macro-F1 over each bucket's classes that have test items: ``{"head_macro_f1": ..., ...}``.

    A class with no test item has no defined F1 and is left out; a bucket with none
    left has no key (no silent NaN).

    Args:
        f1: (C,) per-class F1 (scikit-learn's, zero_division=0).
        support: (C,) test items per class.
        bucket_of: (C,) bucket names from :func:`assign_buckets`.
    """
    out = {}
    for name in BUCKETS:
        scored = (bucket_of == name) & (np.asarray(support) > 0)
        if scored.any():
            out[f"{name}_macro_f1"] = float(np.asarray(f1)[scored].mean())
    return out


def bucket_summary(
    f1: np.ndarray, support: np.ndarray, counts: np.ndarray, bucket_of: np.ndarray
) -> dict:
    """Per bucket: ``macro_f1`` (absent if no class has test items), ``classes``, ``test_support``
    and the training-count range ``train_min``/``train_max``; for ``reports/metrics.json``."""
    scores = bucket_f1(f1, support, bucket_of)
    out = {}
    for name in BUCKETS:
        members = bucket_of == name
        entry = {
            "classes": int(members.sum()),
            "test_support": int(np.asarray(support)[members].sum()),
        }
        if members.any():
            entry.update(
                train_min=float(counts[members].min()), train_max=float(counts[members].max())
            )
        if f"{name}_macro_f1" in scores:
            entry["macro_f1"] = scores[f"{name}_macro_f1"]
        out[name] = entry
    return out
