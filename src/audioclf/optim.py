"""Optimisation pieces of training: device, mixed precision, AdamW groups, learning-rate schedule."""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from audioclf.models import head_and_backbone
from audioclf.train_config import TrainConfig


def resolve_device(device: str) -> torch.device:
    """``train.device`` as a torch device: ``auto`` is CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but torch sees no CUDA device; use train.device=auto or cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"train.device is {device!r}; allowed values: auto, cpu, cuda")
    return torch.device(device)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device``; None for full float32.

    ``auto`` is bf16 on CUDA devices that support it, else fp16, and off on the CPU.

    Raises:
        ValueError: bf16/fp16 asked for on a CPU (where autocast would slow training down).
    """
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise ValueError(f"train.amp is {amp!r}; allowed values: auto, bf16, fp16, off")
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            raise ValueError(f"train.amp={amp} needs a CUDA device, training runs on {device.type}; "
                             "use train.amp=auto or off")
        return None
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for the forward pass (a no-op when ``dtype`` is None)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (bf16 and float32 need none; the scaler is then a pass-through)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups: the head at ``lr``, the backbone at ``lr * backbone_lr_mult``.

    The head group comes last, so ``param_groups[-1]["lr"]`` is the head's rate.
    """
    head, backbone = head_and_backbone(model)
    groups = [{"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult, "name": "backbone"}] if backbone else []
    groups.append({"params": head, "lr": cfg.lr, "name": "head"})
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, *, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base rates after ``step`` optimizer steps.

    Linear warm-up from 0 over ``warmup_epochs``, then ``constant``, ``cosine`` (to 0
    at the last step) or ``step`` (times ``step_gamma`` every ``step_epochs``).
    """
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if cfg.schedule == "cosine":
        total = cfg.epochs * steps_per_epoch
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1.0, total - warmup))))
    if cfg.schedule == "step":
        return cfg.step_gamma ** int(step // (cfg.step_epochs * steps_per_epoch))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step schedule (see :func:`lr_factor`); its state_dict is resumable."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg=cfg, steps_per_epoch=steps_per_epoch))


def steps_per_epoch(n_examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps in one epoch: batches, grouped by ``accumulate``."""
    return math.ceil(math.ceil(n_examples / cfg.batch_size) / cfg.accumulate)
