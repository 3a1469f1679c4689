"""Training losses, chosen by the top-level ``loss`` param."""
from __future__ import annotations

from torch import nn


def cross_entropy() -> nn.Module:
    """Plain cross-entropy over class logits: (B, classes) x (B,) -> scalar."""
    return nn.CrossEntropyLoss()


LOSSES = {"ce": cross_entropy}


def build_loss(name: str) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]()
