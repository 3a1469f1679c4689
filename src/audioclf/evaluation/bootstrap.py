"""Uncertainty of test metrics: mean ± std over folds and bootstrap confidence intervals.

The bootstrap resamples test *groups* (recordings, speakers: the manifest's ``group``) with
replacement, each with all its files, and recomputes the
:func:`audioclf.evaluation.metrics.headline` metrics (and the head/mid/tail macro-F1) on each
resample. The files of one recording are not independent: a model that misses one clip of a
recording tends to miss the others, and resampling files alone narrows the interval below the
variation between training runs. Where every file is its own group, it is the file bootstrap.
"""

from __future__ import annotations

import numpy as np

from audioclf.evaluation.metrics import headline


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ece_bins: int = 15,
    bucket_of: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Percentile bootstrap interval of each :func:`headline` metric, resampling groups of items
    (each with all its items) with replacement; with no ``groups``, each item is its own.

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
        groups: (N,) group of each item (None: every item its own group).

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
    members = group_members(groups, len(y_true))
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = draw_groups(rng, members, y_true)
        for m, v in headline(
            y_true[idx], probs[idx], ece_bins=ece_bins, bucket_of=bucket_of
        ).items():
            samples.setdefault(m, []).append(v)
    present = headline(y_true, probs, ece_bins=ece_bins, bucket_of=bucket_of)
    tail = (1 - level) / 2 * 100
    return {
        m: [float(np.percentile(samples[m], tail)), float(np.percentile(samples[m], 100 - tail))]
        for m in present
        if m in samples
    }


def group_members(groups: np.ndarray | tuple | None, n: int) -> list[np.ndarray]:
    """The item indices of each group, groups in sorted order; with no ``groups``, every one of
    the ``n`` items is its own.

    >>> group_members(np.array(["b", "a", "b"]), 3)
    [array([1]), array([0, 2])]
    """
    if groups is None:
        return [np.array([i]) for i in range(n)]
    _, of = np.unique(np.asarray(groups), return_inverse=True)
    return [np.flatnonzero(of == g) for g in range(of.max() + 1)]


def draw_groups(rng: np.random.Generator, members: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Indices of one resample: as many groups as there are, drawn with replacement, each with
    all its items; drawn again until it holds at least two classes of ``y``."""
    while True:
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if not np.all(y[idx] == y[idx[0]]):
            return idx


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
