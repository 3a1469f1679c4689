"""Training: AdamW (head/backbone rates), warm-up and schedule, mixed precision, gradient
accumulation, on-the-fly augmentation, early stopping on validation macro-F1, and a
resumable last checkpoint (:mod:`audioclf.resume`)."""
from __future__ import annotations

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from audioclf.augment import Augmenter
from audioclf.checkpoint import save_checkpoint
from audioclf.config import NORMS, Params, TrainConfig
from audioclf.features import FeatureStore, stat_tensor
from audioclf.losses import build_loss
from audioclf.metrics import aggregate_by_file, classification_metrics
from audioclf.models import build_model, count_parameters
from audioclf.optim import (autocast, build_optimizer, build_scheduler, grad_scaler, resolve_amp, resolve_device,
                            steps_per_epoch)
from audioclf.resume import LoopState, fingerprint, restore, save_last

MetricsLogger = Callable[[dict[str, float], int], None]
CPU = torch.device("cpu")


@dataclass
class SplitData:
    """One split's segments, read from the feature cache on demand and normalised.

    Attributes:
        store: the cache; nothing is read until :meth:`batch`.
        rows: (S,) cache row of each segment.
        y: (S,) class ids.
        paths: the file of each segment.
        mean, std: normalisation, broadcastable to (C, F, T).
    """

    store: FeatureStore
    rows: np.ndarray
    y: torch.Tensor
    paths: list[str]
    mean: torch.Tensor
    std: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Normalised features (B, C, F, T) of the segments at positions ``idx`` of this split."""
        x = torch.from_numpy(np.asarray(self.store.data[self.rows[np.asarray(idx)]]))  # (B, C, F, T)
        return (x - self.mean) / self.std


def load_split(store: FeatureStore, paths: list[str], norm: dict) -> SplitData:
    """The cached segments of ``paths``, normalised with ``norm`` (see :func:`normalisation`)."""
    rows = store.indices(paths)
    if len(rows) == 0:
        raise ValueError("none of the split's files are in the feature cache (did every file fail to decode?)")
    mean, std = (stat_tensor(norm[k]) for k in ("mean", "std"))
    return SplitData(store, rows, torch.from_numpy(store.targets(rows)), [store.rows[i].path for i in rows], mean, std)


def normalisation(store: FeatureStore, train_paths: list[str], kind: str = "global", chunk: int = 256) -> dict:
    """Mean and std of the training split's features (never val or test), read in chunks.

    Args:
        store: the feature cache.
        train_paths: the training split's files.
        kind: ``global`` -- one mean/std per channel, (C,); ``band`` -- per channel and band, (C, F).
        chunk: segments read at a time (memory stays flat in the split size).

    Returns:
        ``{"kind", "mean", "std"}`` with nested lists, stored in the checkpoint.
    """
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")
    rows = store.indices(train_paths)
    if len(rows) == 0:
        raise ValueError("none of the training files are in the feature cache")
    axes = (0, 2, 3) if kind == "global" else (0, 3)
    total = total_sq = 0.0
    for i in range(0, len(rows), chunk):
        x = np.asarray(store.data[rows[i:i + chunk]], dtype=np.float64)          # (b, C, F, T)
        total = total + x.sum(axis=axes)
        total_sq = total_sq + np.square(x).sum(axis=axes)
    count = len(rows) * np.prod([store.data.shape[a] for a in axes[1:]])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0)) + 1e-8
    return {"kind": kind, "mean": mean.tolist(), "std": std.tolist()}


def _prefetched(data: SplitData, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """(idx, x, seconds waited for x) per batch; batch k+1 is read from the cache while k trains."""
    with ThreadPoolExecutor(1) as reader:
        future = reader.submit(data.batch, batches[0]) if batches else None
        for k, idx in enumerate(batches):
            start = time.perf_counter()
            x = future.result()
            waited = time.perf_counter() - start
            if k + 1 < len(batches):
                future = reader.submit(data.batch, batches[k + 1])
            yield idx, x, waited


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU batch to ``device``; to CUDA through pinned memory, without blocking."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


@torch.no_grad()
def predict(model: nn.Module, data: SplitData, batch_size: int, device: torch.device = CPU,
            amp: torch.dtype | None = None) -> np.ndarray:
    """Softmax probabilities (S, C) of a split's segments, in eval mode."""
    model.eval()
    batches = [torch.arange(i, min(i + batch_size, len(data))) for i in range(0, len(data), batch_size)]
    probs = []
    for _, x, _ in _prefetched(data, batches):
        with autocast(device, amp):
            logits = model(to_device(x, device))                    # (B, C)
        probs.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(probs).numpy()


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
    for i, (idx, x, wait) in enumerate(_prefetched(data, batches)):
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


def build_fit(params: Params, store: FeatureStore, train_data: SplitData, device: torch.device,
              amp: torch.dtype | None) -> tuple[Fit, dict[str, float]]:
    """The model, loss, optimizer, schedule and augmentation of ``params``, for ``train_data``.

    Returns:
        The :class:`Fit` and, for weighted losses, their class weight range (see ``build_loss``).
    """
    cfg, n_classes = params.train, len(store.labels)
    model = build_model(params.model, params.model_config, n_classes=n_classes, in_channels=store.in_channels,
                        input_shape=tuple(store.data.shape[2:])).to(device)
    loss_fn, weights = build_loss(params.loss, params.loss_config, torch.bincount(train_data.y, minlength=n_classes))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch(len(train_data), cfg))
    fit = Fit(model, loss_fn.to(device), optimizer, scheduler, grad_scaler(device, amp),
              Augmenter(params.augment, train_data.mean, train_data.std, n_classes), device, amp, cfg)
    return fit, weights


def train(params: Params, store: FeatureStore, train_paths: list[str], val_paths: list[str],
          checkpoint: Path, log_metrics: MetricsLogger, run_id: str | None = None, *,
          last: Path | None = None, resume: dict | None = None) -> dict:
    """Train ``params.model`` on the train split, selecting the epoch by validation macro-F1.

    Writes the best epoch's checkpoint to ``checkpoint`` and, if ``last`` is given, the
    resumable state there after every epoch. Never reads the test split.

    Args:
        resume: a state from :func:`audioclf.resume.find_resumable` to continue from.

    Returns:
        ``history`` (one dict of train/val metrics per epoch), ``best_epoch``,
        ``best_val_macro_f1``, ``n_parameters``, ``resumed_from_epoch`` (0: fresh),
        ``device``, ``data_wait_share`` (fraction of this process's training time spent
        waiting for batches from the cache) and, for weighted losses,
        ``class_weight_min``/``class_weight_max``.
    """
    cfg = params.train
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    torch.manual_seed(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    norm = normalisation(store, train_paths, cfg.norm)
    train_data = load_split(store, train_paths, norm)
    val_data = load_split(store, val_paths, norm)
    input_shape = tuple(store.data.shape[2:])     # (F, T)
    fit, weights = build_fit(params, store, train_data, device, amp)
    model, optimizer, scheduler = fit.model, fit.optimizer, fit.scheduler
    fp = fingerprint(params, train_paths, val_paths, store.labels)
    if resume is not None and resume["fingerprint"] != fp:
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
        va = evaluate_split(model, val_data, store.labels, params.evaluate.batch_size, device, amp)
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in tr.items() if k != "grad_norm"},
               **{f"val_{k}": va[k] for k in ("loss", "accuracy", "macro_f1")},
               "lr": optimizer.param_groups[-1]["lr"], "grad_norm": tr["grad_norm"]}
        loop.history.append(row)
        log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
        improved = va["macro_f1"] > loop.best_f1
        if improved:
            loop.best_f1, loop.best_epoch = va["macro_f1"], epoch
            save_checkpoint(checkpoint, model=model, model_name=params.model, model_config=params.model_config,
                            labels=store.labels, norm=norm, params=params.raw, input_shape=input_shape,
                            in_channels=store.in_channels, frontend_key=store.frontend_key, epoch=epoch,
                            val_macro_f1=loop.best_f1, mlflow_run_id=run_id, train_token=loop.token)
        loop.epoch = epoch
        stop = not improved and epoch - loop.best_epoch >= cfg.patience
        if last is not None:
            save_last(last, model=model, optimizer=optimizer, scheduler=fit.scheduler, scaler=fit.scaler,
                      generator=generator, loop=loop, fingerprint=fp, run_id=run_id,
                      finished=stop or epoch == cfg.epochs)
        if stop:
            break
    return {"history": loop.history, "best_epoch": loop.best_epoch, "best_val_macro_f1": loop.best_f1,
            "n_parameters": count_parameters(model), "resumed_from_epoch": resumed_from, "device": device.type,
            "data_wait_share": round(waited / spent, 4) if spent else 0.0, **weights}
