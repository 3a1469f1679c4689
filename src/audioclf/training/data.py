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
        kind: ``global`` -- one mean/std per channel, (C,); ``band`` -- per channel and band, (C, F).
        chunk: segments read at a time (memory stays flat in the split size).

    Returns:
        ``{"kind", "mean", "std"}`` with nested lists, stored in the checkpoint.
    """
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")
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


def epoch_order(y: torch.Tensor, sampler: str, generator: torch.Generator) -> torch.Tensor:
    """Example order for one epoch (len(y) draws): a permutation, or class-balanced draws with replacement."""
    if sampler == "balanced":
        counts = torch.bincount(y)
        return torch.multinomial(
            1.0 / counts[y].double(), len(y), replacement=True, generator=generator
        )
    return torch.randperm(len(y), generator=generator)
