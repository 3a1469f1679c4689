"""What training reads besides the model: the training split's input statistics, and each epoch's order.

:func:`normalisation` is computed on the training split only (never validation or test)
and stored in the checkpoint, which applies it at evaluation and prediction time.
"""

from __future__ import annotations

import numpy as np
import torch

from audioclf.config.training import NORMS
from audioclf.features.table import FeatureTable


def normalisation(
    table: FeatureTable, train_paths: list[str], kind: str = "global", chunk: int = 256
) -> dict:
    """Mean and std of the training split's features (never val or test), read in chunks.

    Args:
        table: the feature table.
        train_paths: the training split's files.
        kind: ``global`` -- one mean/std per channel, (C,); ``band`` -- per channel and band, (C, F);
            ``group`` -- :func:`group_statistics` (``train_paths`` are then not used).
        chunk: segments read at a time (memory stays flat in the split size).

    Returns:
        ``{"kind", "mean", "std"}`` with nested lists, stored in the checkpoint.
    """
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")
    if kind == "group":
        return group_statistics(table, chunk)
    rows = table.indices(train_paths)
    if len(rows) == 0:
        raise ValueError("none of the training files are in the feature cache")
    axes = (0, 2, 3) if kind == "global" else (0, 3)
    total = total_sq = 0.0
    for i in range(0, len(rows), chunk):
        x = np.asarray(table.data[rows[i : i + chunk]], dtype=np.float64)  # (b, C, F, T)
        total = total + x.sum(axis=axes)
        total_sq = total_sq + np.square(x).sum(axis=axes)
    count = len(rows) * np.prod([table.data.shape[a] for a in axes[1:]])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0)) + 1e-8
    return {"kind": kind, "mean": mean.tolist(), "std": std.tolist()}


def group_statistics(table: FeatureTable, chunk: int = 256) -> dict:
    """Each group's own mean and std per channel and band, over its segments and frames.

    Every group of the table, whatever its split, and nothing but the features and the
    groups: labels are never read. Two passes (the mean, then the squared deviations from
    it) keep a group's constant feature at std 0, which is then taken as 1: the feature is
    centred, not blown up (a group of one functional vector becomes all zeros).

    Returns:
        ``{"kind": "group", "groups": {group: {"mean", "std"}}}``, each (C, F) as nested lists.
    """
    groups = sorted({r.group for r in table.rows})
    if not groups:
        raise ValueError("the feature table has no rows to take group statistics of")
    index = {g: i for i, g in enumerate(groups)}
    of = np.array([index[r.group] for r in table.rows], dtype=np.int64)  # (S,)
    n, c, f, t = table.data.shape
    counts = np.bincount(of, minlength=len(groups)).astype(np.float64)[:, None, None] * t
    mean = np.zeros((len(groups), c, f))
    for i in range(0, n, chunk):
        x = np.asarray(table.data[i : i + chunk], dtype=np.float64)  # (b, C, F, T)
        np.add.at(mean, of[i : i + chunk], x.sum(axis=3))
    mean /= counts
    var = np.zeros_like(mean)
    for i in range(0, n, chunk):
        x = np.asarray(table.data[i : i + chunk], dtype=np.float64)
        g = of[i : i + chunk]
        np.add.at(var, g, np.square(x - mean[g][..., None]).sum(axis=3))
    std = np.sqrt(var / counts)
    std[std < 1e-6] = 1.0
    return {
        "kind": "group",
        "groups": {g: {"mean": mean[k].tolist(), "std": std[k].tolist()} for g, k in index.items()},
    }


def epoch_order(y: torch.Tensor, sampler: str, generator: torch.Generator) -> torch.Tensor:
    """Example order for one epoch (len(y) draws): a permutation, or class-balanced draws with replacement."""
    if sampler == "balanced":
        counts = torch.bincount(y)
        return torch.multinomial(
            1.0 / counts[y].double(), len(y), replacement=True, generator=generator
        )
    return torch.randperm(len(y), generator=generator)
