"""One epoch of optimisation: what a training step needs (:class:`Fit`, from :func:`build_fit`),
and :func:`train_one_epoch` (augmentation, mixed precision, gradient accumulation and clipping,
and, data-parallel, this process's share of the epoch: :mod:`audioclf.training.distributed`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from audioclf.config.training import TrainConfig, TrainSpec
from audioclf.features.table import FeatureTable, SplitData
from audioclf.models import build_model
from audioclf.models.inference import autocast, to_device
from audioclf.training.augment import Augmenter
from audioclf.training.data import epoch_order
from audioclf.training.distributed import SINGLE, Ranks
from audioclf.training.losses import build_loss
from audioclf.training.optim import build_optimizer, build_scheduler, grad_scaler, steps_per_epoch


@dataclass
class Fit:
    """What one training step needs."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    augment: Augmenter
    device: torch.device
    amp: torch.dtype | None
    cfg: TrainConfig
    ranks: Ranks = SINGLE
    net: nn.Module | None = None  # what a step calls: DistributedDataParallel(model); None: model
    ema: AveragedModel | None = None  # train.ema: the averaged weights, updated after each step

    @property
    def scored(self) -> nn.Module:
        """The weights validated and saved: the averaged ones (train.ema), else the model."""
        return self.model if self.ema is None else self.ema.module


def _optimizer_step(fit: Fit) -> torch.Tensor:
    """Unscale, clip, step, advance the schedule; returns the gradient norm before clipping."""
    fit.scaler.unscale_(fit.optimizer)
    norm = nn.utils.clip_grad_norm_(fit.model.parameters(), fit.cfg.grad_clip)
    fit.scaler.step(fit.optimizer)  # skipped by the scaler if fp16 gradients overflowed
    fit.scaler.update()
    fit.optimizer.zero_grad(set_to_none=True)
    fit.scheduler.step()
    if fit.ema is not None:
        fit.ema.update_parameters(fit.model)
    return norm.detach()


def train_one_epoch(
    fit: Fit,
    data: SplitData,
    generator: torch.Generator,
    augment_generator: torch.Generator | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """One pass over the (augmented) training split; ``train.accumulate`` batches per optimizer step.

    ``generator`` draws the epoch's order, and augmentation too unless ``augment_generator``
    is given (data-parallel: each process augments from its own). Data-parallel, this process
    trains on its share of the order and the metrics are over every process's examples.

    Returns:
        Metrics (loss, accuracy, macro_f1, grad_norm) and timing: ``data_wait_s`` (time
        the steps waited for their batches from the cache) and ``epoch_s`` (wall time).
    """
    cfg, net = fit.cfg, fit.model if fit.net is None else fit.net
    augment_generator = generator if augment_generator is None else augment_generator
    net.train()
    order = fit.ranks.shard(epoch_order(data.y, cfg.sampler, generator))
    # sorted within a batch: the same batch, read from the memmap front to back
    batches = [
        order[i : i + cfg.batch_size].sort().values for i in range(0, len(order), cfg.batch_size)
    ]
    total, ys, preds, norms = torch.zeros((), dtype=torch.float64, device=fit.device), [], [], []
    waited, start = 0.0, time.perf_counter()
    fit.optimizer.zero_grad(set_to_none=True)
    for i, (idx, x, wait) in enumerate(data.prefetched(batches)):
        waited += wait
        xb, yb = to_device(x, fit.device), to_device(data.y[idx], fit.device)
        xb, target = fit.augment(xb, yb, augment_generator)  # target (B,) or MixUp's (B, C)
        first = i - i % cfg.accumulate
        group = min(cfg.accumulate, len(batches) - first)  # batches in this optimizer step
        step = i == first + group - 1  # the step's last batch: gradients averaged over processes
        with fit.ranks.no_sync(net, sync=step):
            with autocast(fit.device, fit.amp):
                logits = net(xb)  # (B, C)
            loss = fit.loss_fn(logits.float(), target)
            fit.scaler.scale(loss / group).backward()
        if step:
            norms.append(_optimizer_step(fit))
        total += loss.detach() * len(idx)
        ys.append(data.y[idx])
        preds.append(logits.detach().argmax(dim=1))
    y_true = fit.ranks.gather(torch.cat(ys)).numpy()
    y_pred = fit.ranks.gather(torch.cat(preds).cpu()).numpy()
    total = fit.ranks.total(total)
    norms = torch.stack(norms).float().cpu()  # the same on every process: gradients are averaged
    finite = norms[norms.isfinite()]
    metrics = {
        "loss": float(total) / len(y_true),
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "grad_norm": float(finite.mean()) if len(finite) else math.nan,
    }
    return metrics, {"data_wait_s": waited, "epoch_s": time.perf_counter() - start}


def build_fit(
    spec: TrainSpec,
    table: FeatureTable,
    train_data: SplitData,
    device: torch.device,
    amp: torch.dtype | None,
    ranks: Ranks = SINGLE,
) -> tuple[Fit, dict[str, float]]:
    """The model, loss, optimizer, schedule and augmentation of ``spec``, for ``train_data``
    (data-parallel: the model wrapped for ``ranks``, the schedule over this process's share).

    Returns:
        The :class:`Fit` and, for weighted losses, their class weight range (see ``build_loss``).
    """
    cfg, n_classes = spec.train, len(table.labels)
    model = build_model(
        spec.model,
        spec.model_config,
        n_classes=n_classes,
        in_channels=table.in_channels,
        input_shape=tuple(table.data.shape[2:]),
    ).to(device)
    loss_fn, weights = build_loss(
        spec.loss, spec.loss_config, torch.bincount(train_data.y, minlength=n_classes)
    )
    optimizer = build_optimizer(model, cfg)
    steps = steps_per_epoch(ranks.shard_size(len(train_data)), cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    fit = Fit(
        model,
        loss_fn.to(device),
        optimizer,
        scheduler,
        grad_scaler(device, amp),
        # per-group statistics do not broadcast to a batch: the augmentations allowed with them
        # (audioclf.config.frontends.check_augment) act on the normalised values themselves
        Augmenter(spec.augment, *_dB_statistics(train_data), n_classes),
        device,
        amp,
        cfg,
        ranks,
        ranks.wrap(model),
        # batch-norm statistics are averaged with the weights (use_buffers)
        AveragedModel(model, multi_avg_fn=ema_update(cfg.ema), use_buffers=True)
        if cfg.ema
        else None,
    )
    return fit, weights


def ema_update(decay: float):
    """torch's exponential moving average of the weights, its decay warmed up as TensorFlow's
    ``ExponentialMovingAverage`` does: ``min(decay, (1 + n) / (10 + n))`` at the n-th update, so
    that a short training is not an average dominated by its first steps' weights."""

    def update(averaged, current, n_averaged) -> None:
        n = int(n_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, n_averaged)

    return update


def _dB_statistics(data: SplitData) -> tuple:
    """(mean, std) that map a split's normalised features back to dB; (0, 1) for group statistics."""
    return (0.0, 1.0) if data.group_of is not None else (data.mean, data.std)
