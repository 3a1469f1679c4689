"""The torch device a param names: one rule for ``features.device`` and ``train.device``."""

from __future__ import annotations

import torch

from audioclf.config.schema import ParamsError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, key: str) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU; ``cuda`` without a GPU is an error naming ``key``."""
    if name not in DEVICES:
        raise ParamsError(f"params: '{key}' is {name!r}; allowed values: {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError(
            f"params: '{key}' is 'cuda' but torch sees no CUDA device; use {key}=auto or cpu"
        )
    return torch.device(name)
