"""Checkpoints that rebuild their model on their own: weights, model config, input
shape and channels, resolved architecture (for models from pretrained weights),
labels, input normalisation, the front-end params and the resolved training params.
Rebuilding never loads pretrained weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.config.models import MODEL_CONFIGS
from audioclf.config.schema import build
from audioclf.errors import MissingInputError
from audioclf.io import atomic_path
from audioclf.models import build_model


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    model_name: str,
    model_config: Any,
    labels: list[str],
    norm: dict,
    params: dict,
    input_shape: tuple[int, int] | None = None,
    in_channels: int = 1,
    **extra: Any,
) -> None:
    """Write a checkpoint atomically (a crash mid-write never leaves a truncated file).

    ``input_shape`` is (F, T) of the features; ``in_channels`` the feature channels the
    model reads (1 log-mel, 3 MFCC+deltas); ``norm`` the training split's statistics
    (see :func:`audioclf.training.loop.normalisation`); ``params`` the resolved training
    params (:meth:`audioclf.config.training.TrainSpec.resolved`).
    """
    arch = model.arch() if hasattr(model, "arch") else None
    state = {
        "model_name": model_name,
        "model_config": dataclasses.asdict(model_config),
        "input_shape": None if input_shape is None else list(input_shape),
        "model_arch": arch,
        "in_channels": int(in_channels),
        "labels": list(labels),
        "norm": dict(norm),
        "params": params,
        "state_dict": model.state_dict(),
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model stored in a checkpoint, in eval mode.

    Returns:
        The model and the checkpoint dict (labels, norm, params, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"checkpoint not found: {path} (run: dvc repro train)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    name = ckpt["model_name"]
    cfg = build(MODEL_CONFIGS[name], ckpt["model_config"], f"checkpoint.model_config[{name}]")
    model = build_model(
        name,
        cfg,
        n_classes=len(ckpt["labels"]),
        in_channels=ckpt.get("in_channels", 1),
        input_shape=ckpt.get("input_shape"),
        arch=ckpt.get("model_arch"),
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
