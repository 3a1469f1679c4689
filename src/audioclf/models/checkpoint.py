"""Checkpoints that rebuild their model on their own: weights, model config, input
shape and channels, resolved architecture (for models from pretrained weights),
labels, input normalisation, the front-end params and the resolved training params.
Rebuilding never loads pretrained weights. A scikit-learn head's checkpoint holds all
but the fitted pipeline, which it names: a folder beside it (:mod:`audioclf.models.classical`)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.config.heads import HEAD_CONFIGS
from audioclf.config.models import MODEL_CONFIGS
from audioclf.config.schema import ParamsError, build
from audioclf.errors import CheckpointError, MissingInputError
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


def read_state(path: str | Path, *, mmap: bool = False) -> dict:
    """The dict saved at ``path``, unpickling nothing but tensors and plain values.

    ``torch.load(weights_only=True)``: a file crafted to run code when unpickled (or any
    object of another class) is refused, never executed.

    Raises:
        CheckpointError: the file holds other objects, is damaged, or is not a dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values ({first}); it was not "
            f"written by this version of audioclf, or was crafted: refusing to load it. Retrain "
            f"(dvc repro train) or load only checkpoints you trust"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc}); retrain") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint; retrain")
    return state


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model stored in a checkpoint, in eval mode.

    Returns:
        The model and the checkpoint dict (labels, norm, params, ...).

    Raises:
        MissingInputError: no file at ``path``.
        CheckpointError: the file is unsafe, damaged or not a checkpoint of ours.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"checkpoint not found: {path} (run: dvc repro train)")
    ckpt = read_state(path)
    name = ckpt.get("model_name")
    if name not in MODEL_CONFIGS or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not an audioclf checkpoint (no known model_name); retrain"
        )
    try:  # the checks params get: a model too large to build is refused before it is built
        cfg = build(MODEL_CONFIGS[name], ckpt["model_config"], f"checkpoint.model_config[{name}]")
    except ParamsError as exc:
        raise CheckpointError(
            f"{path} describes a model that params would refuse ({exc}); it was not written by "
            f"this version of audioclf, or was crafted: refusing to load it; retrain"
        ) from None
    if name in HEAD_CONFIGS:  # a scikit-learn head: its fitted pipeline is in a folder beside
        from audioclf.models.classical import load_head

        return load_head(path, ckpt), ckpt
    try:
        model = build_model(
            name,
            cfg,
            n_classes=len(ckpt["labels"]),
            in_channels=ckpt.get("in_channels", 1),
            input_shape=ckpt.get("input_shape"),
            arch=ckpt.get("model_arch"),
        )
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, MemoryError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} does not rebuild into its model ({first}); retrain (dvc repro train)"
        ) from None
    return model.eval(), ckpt
