"""Running a model over feature batches: device transfer, mixed precision, softmax probabilities.

Shared by training (validation) and evaluation, so neither imports the other.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from audioclf.features.table import SplitData

CPU = torch.device("cpu")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU batch to ``device``; to CUDA through pinned memory, without blocking."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for the forward pass (a no-op when ``dtype`` is None)."""
    return (
        torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )


@torch.no_grad()
def predict(
    model: nn.Module,
    data: SplitData,
    batch_size: int,
    device: torch.device = CPU,
    amp: torch.dtype | None = None,
) -> np.ndarray:
    """Softmax probabilities (S, C) of a split's segments, in eval mode."""
    model.eval()
    batches = [
        torch.arange(i, min(i + batch_size, len(data))) for i in range(0, len(data), batch_size)
    ]
    probs = []
    for _, x, _ in data.prefetched(batches):
        with autocast(device, amp):
            logits = model(to_device(x, device))  # (B, C)
        probs.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(probs).numpy()
