"""The training loop: AdamW (head/backbone rates), warm-up and schedule, mixed precision,
gradient accumulation, on-the-fly augmentation, early stopping on validation macro-F1,
and a resumable last checkpoint (:mod:`audioclf.training.resume`).

:func:`train` takes a :class:`~audioclf.config.training.TrainSpec` (what it reads of
the params) and the feature table, never the whole params.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from audioclf.config.training import NORMS, TrainConfig, TrainSpec
from audioclf.devices import resolve_device
from audioclf.features.table import FeatureTable, SplitData, load_split
from audioclf.evaluation.metrics import aggregate_by_file, classification_metrics
from audioclf.models import build_model, count_parameters
from audioclf.models.checkpoint import save_checkpoint
from audioclf.models.inference import CPU, autocast, predict, to_device
from audioclf.training.augment import Augmenter
from audioclf.training.losses import build_loss
from audioclf.training.optim import build_optimizer, build_scheduler, grad_scaler, resolve_amp, steps_per_epoch
from audioclf.training.resume import LoopState, restore, run_key, save_last

MetricsLogger = Callable[[dict[str, float], int], None]


def normalisation(table: FeatureTable, train_paths: list[str], kind: str = "global", chunk: int = 256) -> dict:
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
        x = np.asarray(table.data[rows[i:i + chunk]], dtype=np.float64)          # (b, C, F, T)
        total = total + x.sum(axis=axes)
        total_sq = total_sq + np.square(x).sum(axis=axes)
    count = len(rows) * np.prod([table.data.shape[a] for a in axes[1:]])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0)) + 1e-8
    return {"kind": kind, "mean": mean.tolist(), "std": std.tolist()}


def evaluate_split(model: nn.Module, data: SplitData, labels: list[str], batch_size: int,
                   device: torch.device = CPU, amp: torch.dtype | None = None) -> dict:
    """Segment-level loss and file-level metrics (segment probabilities averaged per file)."""
    probs = predict(model, data, batch_size, device, amp)
    loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), data.y))
    file_probs, file_y, _ = aggregate_by_file(probs, data.y.numpy(), data.paths)
    return {"loss": loss, **classification_metrics(file_y, file_probs, labels)}


def epoch_order(y: torch.Tensor, sampler: str, generator: torch.Generator) -> torch.Tensor:
    """Example order for one epoch (len(y) draws): a permutation, or class-balanced draws with replacement."""
    if sampler == "balanced":
        counts = torch.bincount(y)
        return torch.multinomial(1.0 / counts[y].double(), len(y), replacement=True, generator=generator)
    return torch.randperm(len(y), generator=generator)


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


def _optimizer_step(fit: Fit) -> torch.Tensor:
    """Unscale, clip, step, advance the schedule; returns the gradient norm before clipping."""
    fit.scaler.unscale_(fit.optimizer)
    norm = nn.utils.clip_grad_norm_(fit.model.parameters(), fit.cfg.grad_clip)
    fit.scaler.step(fit.optimizer)          # skipped by the scaler if fp16 gradients overflowed
    fit.scaler.update()
    fit.optimizer.zero_grad(set_to_none=True)
    fit.scheduler.step()
    return norm.detach()


def train_one_epoch(fit: Fit, data: SplitData, generator: torch.Generator) -> tuple[dict[str, float], dict[str, float]]:
    """One pass over the (augmented) training split; ``train.accumulate`` batches per optimizer step.

    Returns:
        Metrics (loss, accuracy, macro_f1, grad_norm) and timing: ``data_wait_s`` (time
        the steps waited for their batches from the cache) and ``epoch_s`` (wall time).
    """
    model, cfg = fit.model, fit.cfg
    model.train()
    order = epoch_order(data.y, cfg.sampler, generator)
    # sorted within a batch: the same batch, read from the memmap front to back
    batches = [order[i:i + cfg.batch_size].sort().values for i in range(0, len(order), cfg.batch_size)]
    total, ys, preds, norms = torch.zeros((), dtype=torch.float64, device=fit.device), [], [], []
    waited, start = 0.0, time.perf_counter()
    fit.optimizer.zero_grad(set_to_none=True)
    for i, (idx, x, wait) in enumerate(data.prefetched(batches)):
        waited += wait
        xb, yb = to_device(x, fit.device), to_device(data.y[idx], fit.device)
        xb, target = fit.augment(xb, yb, generator)              # target (B,) or MixUp's (B, C)
        with autocast(fit.device, fit.amp):
            logits = model(xb)                                   # (B, C)
        loss = fit.loss_fn(logits.float(), target)
        first = i - i % cfg.accumulate
        group = min(cfg.accumulate, len(batches) - first)        # batches in this optimizer step
        fit.scaler.scale(loss / group).backward()
        if i == first + group - 1:
            norms.append(_optimizer_step(fit))
        total += loss.detach() * len(idx)
        ys.append(data.y[idx])
        preds.append(logits.detach().argmax(dim=1))
    y_true, y_pred = torch.cat(ys).numpy(), torch.cat(preds).cpu().numpy()
    norms = torch.stack(norms).float().cpu()
    finite = norms[norms.isfinite()]
    metrics = {"loss": float(total) / len(order), "accuracy": float((y_true == y_pred).mean()),
               "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
               "grad_norm": float(finite.mean()) if len(finite) else math.nan}
    return metrics, {"data_wait_s": waited, "epoch_s": time.perf_counter() - start}


def build_fit(spec: TrainSpec, table: FeatureTable, train_data: SplitData, device: torch.device,
              amp: torch.dtype | None) -> tuple[Fit, dict[str, float]]:
    """The model, loss, optimizer, schedule and augmentation of ``spec``, for ``train_data``.

    Returns:
        The :class:`Fit` and, for weighted losses, their class weight range (see ``build_loss``).
    """
    cfg, n_classes = spec.train, len(table.labels)
    model = build_model(spec.model, spec.model_config, n_classes=n_classes, in_channels=table.in_channels,
                        input_shape=tuple(table.data.shape[2:])).to(device)
    loss_fn, weights = build_loss(spec.loss, spec.loss_config, torch.bincount(train_data.y, minlength=n_classes))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch(len(train_data), cfg))
    fit = Fit(model, loss_fn.to(device), optimizer, scheduler, grad_scaler(device, amp),
              Augmenter(spec.augment, train_data.mean, train_data.std, n_classes), device, amp, cfg)
    return fit, weights


def train(spec: TrainSpec, table: FeatureTable, train_paths: list[str], val_paths: list[str],
          checkpoint: Path, log_metrics: MetricsLogger, run_id: str | None = None, *,
          last: Path | None = None, resume: dict | None = None) -> dict:
    """Train ``spec.model`` on the train split, selecting the epoch by validation macro-F1.

    Writes the best epoch's checkpoint to ``checkpoint`` and, if ``last`` is given, the
    resumable state there after every epoch. Never reads the test split. Validation
    runs in batches of ``spec.train.batch_size``.

    Args:
        spec: what to train, and how (:meth:`audioclf.config.Params.train_spec`).
        table: the feature table the paths are looked up in.
        train_paths, val_paths: the files of the two splits.
        checkpoint: where the best epoch's checkpoint goes.
        log_metrics: called with each epoch's metrics and the epoch.
        run_id: the tracking run, recorded in the checkpoints.
        last: where the resumable state goes after every epoch (None: nowhere).
        resume: a state from :func:`audioclf.training.resume.find_resumable` to continue from.

    Returns:
        ``history`` (one dict of train/val metrics per epoch), ``best_epoch``,
        ``best_val_macro_f1``, ``n_parameters``, ``resumed_from_epoch`` (0: fresh),
        ``device``, ``data_wait_share`` (fraction of this process's training time spent
        waiting for batches from the table) and, for weighted losses,
        ``class_weight_min``/``class_weight_max``.
    """
    cfg = spec.train
    device = resolve_device(cfg.device, "train.device")
    amp = resolve_amp(cfg.amp, device)
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    norm = normalisation(table, train_paths, cfg.norm)
    train_data = load_split(table, train_paths, norm)
    val_data = load_split(table, val_paths, norm)
    input_shape = tuple(table.data.shape[2:])     # (F, T)
    fit, weights = build_fit(spec, table, train_data, device, amp)
    model, optimizer = fit.model, fit.optimizer
    key = run_key(spec, train_paths, val_paths, table.labels, table.frontend_key)
    if resume is not None and resume["run_key"] != key:
        raise ValueError("the state to resume from was written for other params or data (see find_resumable)")
    loop = LoopState(token=uuid.uuid4().hex) if resume is None else restore(
        resume, model=model, optimizer=optimizer, scheduler=fit.scheduler, scaler=fit.scaler, generator=generator)
    resumed_from = loop.epoch
    if weights:
        log_metrics(weights, 0)
    first = cfg.epochs + 1 if resume is not None and resume["finished"] else loop.epoch + 1
    waited = spent = 0.0
    for epoch in range(first, cfg.epochs + 1):
        tr, timing = train_one_epoch(fit, train_data, generator)
        waited, spent = waited + timing["data_wait_s"], spent + timing["epoch_s"]
        if not math.isfinite(tr["loss"]):
            raise FloatingPointError(f"training loss is {tr['loss']} in epoch {epoch}; lower train.lr, raise "
                                     "train.warmup_epochs or set train.amp=off")
        va = evaluate_split(model, val_data, table.labels, cfg.batch_size, device, amp)
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in tr.items() if k != "grad_norm"},
               **{f"val_{k}": va[k] for k in ("loss", "accuracy", "macro_f1")},
               "lr": optimizer.param_groups[-1]["lr"], "grad_norm": tr["grad_norm"]}
        loop.history.append(row)
        log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
        improved = va["macro_f1"] > loop.best_f1
        if improved:
            loop.best_f1, loop.best_epoch = va["macro_f1"], epoch
            save_checkpoint(checkpoint, model=model, model_name=spec.model, model_config=spec.model_config,
                            labels=table.labels, norm=norm, params=spec.resolved(), input_shape=input_shape,
                            in_channels=table.in_channels, frontend=table.meta["frontend"],
                            frontend_key=table.frontend_key, epoch=epoch, val_macro_f1=loop.best_f1,
                            mlflow_run_id=run_id, train_token=loop.token)
        loop.epoch = epoch
        stop = not improved and epoch - loop.best_epoch >= cfg.patience
        if last is not None:
            save_last(last, model=model, optimizer=optimizer, scheduler=fit.scheduler, scaler=fit.scaler,
                      generator=generator, loop=loop, run_key=key, run_id=run_id,
                      finished=stop or epoch == cfg.epochs)
        if stop:
            break
    return {"history": loop.history, "best_epoch": loop.best_epoch, "best_val_macro_f1": loop.best_f1,
            "n_parameters": count_parameters(model), "resumed_from_epoch": resumed_from, "device": device.type,
            "data_wait_share": round(waited / spent, 4) if spent else 0.0, **weights}
