"""Optimisation pieces of training: mixed precision, AdamW groups, learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from audioclf.config.schema import ParamsError, choice
from audioclf.config.training import AMP_MODES, TrainConfig
from audioclf.models import head_and_backbone


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device``; None for full float32.

    ``auto`` is bf16 on CUDA devices that support it, else fp16, and off on the CPU.

    Raises:
        ParamsError: bf16/fp16 asked for on a CPU (where autocast would slow training down).
    """
    choice(amp, AMP_MODES, "train.amp")
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            raise ParamsError(
                f"params: 'train.amp' is {amp}, which needs a CUDA device, training runs on {device.type}; "
                "use train.amp=auto or off"
            )
        return None
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (bf16 and float32 need none; the scaler is then a pass-through)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups: the head at ``lr``, the backbone at ``lr * backbone_lr_mult``.

    The head group comes last, so ``param_groups[-1]["lr"]`` is the head's rate.
    """
    head, backbone = head_and_backbone(model)
    groups = (
        [{"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult, "name": "backbone"}]
        if backbone
        else []
    )
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


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step schedule (see :func:`lr_factor`); its state_dict is resumable."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg=cfg, steps_per_epoch=steps_per_epoch)
    )


def steps_per_epoch(n_examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps in one epoch: batches, grouped by ``accumulate``."""
    return math.ceil(math.ceil(n_examples / cfg.batch_size) / cfg.accumulate)
