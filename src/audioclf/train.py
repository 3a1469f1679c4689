"""Training: AdamW, cosine schedule, early stopping on validation macro-F1."""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from audioclf.checkpoint import save_checkpoint
from audioclf.config import NORMS, Params, TrainConfig
from audioclf.features import FeatureStore
from audioclf.losses import build_loss
from audioclf.metrics import aggregate_by_file, classification_metrics
from audioclf.models import build_model, count_parameters

MetricsLogger = Callable[[dict[str, float], int], None]


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
    mean, std = (_broadcastable(norm[k]) for k in ("mean", "std"))
    return SplitData(store, rows, torch.from_numpy(store.targets(rows)), [store.rows[i].path for i in rows], mean, std)


def _broadcastable(stat) -> torch.Tensor:
    """A per-channel (C,), per-band (C, F) or scalar statistic as a tensor broadcastable to (C, F, T)."""
    t = torch.tensor(stat, dtype=torch.float32)
    while t.dim() < 3:
        t = t.unsqueeze(-1)
    return t


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


@torch.no_grad()
def predict(model: nn.Module, data: SplitData, batch_size: int) -> np.ndarray:
    """Softmax probabilities (S, C) of a split's segments, in eval mode."""
    model.eval()
    batches = [torch.arange(i, min(i + batch_size, len(data))) for i in range(0, len(data), batch_size)]
    return torch.cat([model(x).softmax(dim=1) for _, x, _ in _prefetched(data, batches)]).numpy()


def evaluate_split(model: nn.Module, data: SplitData, labels: list[str], batch_size: int) -> dict:
    """Segment-level loss and file-level metrics (segment probabilities averaged per file)."""
    probs = predict(model, data, batch_size)
    loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), data.y))
    file_probs, file_y, _ = aggregate_by_file(probs, data.y.numpy(), data.paths)
    return {"loss": loss, **classification_metrics(file_y, file_probs, labels)}


def train_one_epoch(model, data: SplitData, loss_fn, optimizer, scheduler, cfg: TrainConfig,
                    generator: torch.Generator) -> tuple[dict[str, float], dict[str, float]]:
    """One pass over the split in a seeded random order.

    Returns:
        Metrics (loss, accuracy, macro_f1) and timing: ``data_wait_s`` (time the step
        waited for its batch) and ``epoch_s`` (wall time of the pass).
    """
    model.train()
    order = torch.randperm(len(data), generator=generator)
    # sorted within a batch: the same batch, read from the memmap front to back
    batches = [order[i:i + cfg.batch_size].sort().values for i in range(0, len(order), cfg.batch_size)]
    total, ys, preds, waited = 0.0, [], [], 0.0
    start = time.perf_counter()
    for idx, xb, wait in _prefetched(data, batches):
        yb = data.y[idx]
        logits = model(xb)                                   # (B, n_classes)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        ys.append(yb)
        preds.append(logits.argmax(dim=1))
        waited += wait
    y_true, y_pred = torch.cat(ys).numpy(), torch.cat(preds).numpy()
    metrics = {"loss": total / len(order), "accuracy": float((y_true == y_pred).mean()),
               "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}
    return metrics, {"data_wait_s": waited, "epoch_s": time.perf_counter() - start}


def train(params: Params, store: FeatureStore, train_paths: list[str], val_paths: list[str],
          checkpoint: Path, log_metrics: MetricsLogger, run_id: str | None = None) -> dict:
    """Train ``params.model`` on the train split, selecting the epoch by validation macro-F1.

    Writes the best epoch's checkpoint to ``checkpoint``. Never reads the test split.

    Returns:
        ``history`` (one dict of train/val metrics per epoch), ``best_epoch``,
        ``best_val_macro_f1``, ``n_parameters`` and ``data_wait_share`` (the fraction
        of training time spent waiting for batches from the cache).
    """
    cfg = params.train
    torch.manual_seed(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    norm = normalisation(store, train_paths, cfg.norm)
    train_data = load_split(store, train_paths, norm)
    val_data = load_split(store, val_paths, norm)
    model = build_model(params.model, params.model_config, n_classes=len(store.labels), in_channels=store.in_channels)
    loss_fn = build_loss(params.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train_data) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history, best_f1, best_epoch, waited, spent = [], -1.0, 0, 0.0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        tr, timing = train_one_epoch(model, train_data, loss_fn, optimizer, scheduler, cfg, generator)
        waited, spent = waited + timing["data_wait_s"], spent + timing["epoch_s"]
        va = evaluate_split(model, val_data, store.labels, params.evaluate.batch_size)
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"], "train_macro_f1": tr["macro_f1"],
               "val_loss": va["loss"], "val_accuracy": va["accuracy"], "val_macro_f1": va["macro_f1"],
               "lr": scheduler.get_last_lr()[0]}
        history.append(row)
        log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
        if va["macro_f1"] > best_f1:
            best_f1, best_epoch = va["macro_f1"], epoch
            save_checkpoint(checkpoint, model=model, model_name=params.model, model_config=params.model_config,
                            labels=store.labels, norm=norm, params=params.raw, in_channels=store.in_channels,
                            frontend_key=store.frontend_key, epoch=epoch, val_macro_f1=best_f1, mlflow_run_id=run_id)
        elif epoch - best_epoch >= cfg.patience:
            break
    return {"history": history, "best_epoch": best_epoch, "best_val_macro_f1": best_f1,
            "n_parameters": count_parameters(model), "data_wait_share": round(waited / spent, 4) if spent else 0.0}
