"""Training: AdamW, cosine schedule, early stopping on validation macro-F1."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from audioclf.checkpoint import save_checkpoint
from audioclf.config import Params, TrainConfig
from audioclf.features import FeatureStore
from audioclf.losses import build_loss
from audioclf.metrics import aggregate_by_file, classification_metrics
from audioclf.models import build_model, count_parameters

MetricsLogger = Callable[[dict[str, float], int], None]


@dataclass
class SplitData:
    """Normalised features of one split: x (S, 1, n_mels, T), y (S,), the file of each segment."""

    x: torch.Tensor
    y: torch.Tensor
    paths: list[str]


def load_split(store: FeatureStore, paths: list[str], norm: dict[str, float]) -> SplitData:
    x, y, rows = store.select(paths)
    if len(rows) == 0:
        raise ValueError("none of the split's files are in the feature cache (did every file fail to decode?)")
    x = (torch.from_numpy(x) - norm["mean"]) / norm["std"]
    return SplitData(x.unsqueeze(1), torch.from_numpy(y), [r.path for r in rows])


def normalisation(store: FeatureStore, train_paths: list[str]) -> dict[str, float]:
    """Global mean and std of the training split's log-mel values (never val or test)."""
    x, _, _ = store.select(train_paths)
    return {"mean": float(x.mean(dtype=np.float64)), "std": float(x.std(dtype=np.float64)) + 1e-8}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """Softmax probabilities (S, C) for inputs (S, 1, n_mels, T), in eval mode."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).softmax(dim=1) for i in range(0, len(x), batch_size)]).numpy()


def evaluate_split(model: nn.Module, data: SplitData, labels: list[str], batch_size: int) -> dict:
    """Segment-level loss and file-level metrics (segment probabilities averaged per file)."""
    probs = predict(model, data.x, batch_size)
    loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), data.y))
    file_probs, file_y, _ = aggregate_by_file(probs, data.y.numpy(), data.paths)
    return {"loss": loss, **classification_metrics(file_y, file_probs, labels)}


def train_one_epoch(model, data: SplitData, loss_fn, optimizer, scheduler, cfg: TrainConfig,
                    generator: torch.Generator) -> dict[str, float]:
    model.train()
    order = torch.randperm(len(data.x), generator=generator)
    total, preds = 0.0, []
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        xb, yb = data.x[idx], data.y[idx]
        logits = model(xb)                                   # (B, C)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        preds.append(logits.argmax(dim=1))
    y_true, y_pred = data.y[order].numpy(), torch.cat(preds).numpy()
    return {"loss": total / len(order), "accuracy": float((y_true == y_pred).mean()),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def train(params: Params, store: FeatureStore, train_paths: list[str], val_paths: list[str],
          checkpoint: Path, log_metrics: MetricsLogger, run_id: str | None = None) -> dict:
    """Train ``params.model`` on the train split, selecting the epoch by validation macro-F1.

    Writes the best epoch's checkpoint to ``checkpoint``. Never reads the test split.

    Returns:
        ``history`` (one dict of train/val metrics per epoch), ``best_epoch``,
        ``best_val_macro_f1`` and ``n_parameters``.
    """
    cfg = params.train
    torch.manual_seed(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    norm = normalisation(store, train_paths)
    train_data = load_split(store, train_paths, norm)
    val_data = load_split(store, val_paths, norm)
    model = build_model(params.model, params.model_config, n_classes=len(store.labels))
    loss_fn = build_loss(params.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train_data.x) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history, best_f1, best_epoch = [], -1.0, 0
    for epoch in range(1, cfg.epochs + 1):
        tr = train_one_epoch(model, train_data, loss_fn, optimizer, scheduler, cfg, generator)
        va = evaluate_split(model, val_data, store.labels, params.evaluate.batch_size)
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"], "train_macro_f1": tr["macro_f1"],
               "val_loss": va["loss"], "val_accuracy": va["accuracy"], "val_macro_f1": va["macro_f1"],
               "lr": scheduler.get_last_lr()[0]}
        history.append(row)
        log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
        if va["macro_f1"] > best_f1:
            best_f1, best_epoch = va["macro_f1"], epoch
            save_checkpoint(checkpoint, model=model, model_name=params.model, model_config=params.model_config,
                            labels=store.labels, norm=norm, params=params.raw, epoch=epoch,
                            val_macro_f1=best_f1, mlflow_run_id=run_id)
        elif epoch - best_epoch >= cfg.patience:
            break
    return {"history": history, "best_epoch": best_epoch, "best_val_macro_f1": best_f1,
            "n_parameters": count_parameters(model)}
