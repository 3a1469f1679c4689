"""The training loop: AdamW (head/backbone rates), warm-up and schedule, mixed precision,
gradient accumulation, on-the-fly augmentation, early stopping on validation macro-F1 (the
loss breaks ties), and a resumable last checkpoint (:mod:`audioclf.training.resume`); one
process, or one of a data-parallel group (:mod:`audioclf.training.distributed`).

:func:`train` takes a :class:`~audioclf.config.training.TrainSpec` (what it reads of
the params) and the feature table, never the whole params.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from audioclf.config.frontends import check_pair
from audioclf.config.training import TrainSpec
from audioclf.evaluation.metrics import aggregate_by_file, classification_metrics
from audioclf.features.table import FeatureTable, SplitData, load_split
from audioclf.models import count_parameters
from audioclf.models.checkpoint import save_checkpoint
from audioclf.models.inference import CPU, segment_probabilities
from audioclf.models.pretrained import input_statistics
from audioclf.progress import eta
from audioclf.training.data import normalisation
from audioclf.training.distributed import SINGLE, Ranks, predict_shared
from audioclf.training.optim import (
    resolve_amp,
)
from audioclf.training.resume import LoopState, restore, run_key, save_last
from audioclf.training.steps import build_fit, train_one_epoch
from audioclf.training.stopping import EarlyStopping

log = logging.getLogger(__name__)
MetricsLogger = Callable[[dict[str, float], int], None]


def evaluate_split(
    model: nn.Module,
    data: SplitData,
    labels: list[str],
    batch_size: int,
    device: torch.device = CPU,
    amp: torch.dtype | None = None,
    ranks: Ranks = SINGLE,
) -> dict | None:
    """Segment-level loss and file-level metrics (segment probabilities averaged per file).

    Data-parallel, every process predicts a share and rank 0 scores them (None elsewhere).
    """
    probs = (
        predict_shared(model, data, len(labels), batch_size, device, amp, ranks)
        if ranks.parallel
        else segment_probabilities(model, data, batch_size, device, amp)
    )
    if probs is None:
        return None
    loss = float(
        nn.functional.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), data.y)
    )
    file_probs, file_y, _ = aggregate_by_file(probs, data.y.numpy(), data.paths)
    return {"loss": loss, **classification_metrics(file_y, file_probs, labels)}


def train(
    spec: TrainSpec,
    table: FeatureTable,
    train_paths: list[str],
    val_paths: list[str],
    checkpoint: Path,
    log_metrics: MetricsLogger,
    run_id: str | None = None,
    *,
    last: Path | None = None,
    resume: dict | None = None,
    ranks: Ranks = SINGLE,
    fold: int = 0,
) -> dict:
    """Train ``spec.model`` on the train split, selecting the epoch by validation macro-F1
    (ties within one validation file's worth: the lower loss; :mod:`audioclf.training.stopping`).

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
        ranks: this process's place in a data-parallel training: rank 0 alone writes
            ``checkpoint`` and ``last`` (every rank gets the same paths and ``resume``).
        fold: names the fold in the per-epoch log lines.

    Returns:
        ``history`` (one dict of train/val metrics per epoch), ``best_epoch``,
        ``best_val_macro_f1``, ``n_parameters``, ``resumed_from_epoch`` (0: fresh),
        ``device``, ``processes``, ``data_wait_share`` (fraction of this process's training
        time spent waiting for batches from the table) and, for weighted losses,
        ``class_weight_min``/``class_weight_max``.
    """
    cfg = spec.train
    device = ranks.device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    check_pair(table.kind, spec.model, spec.model_config)  # a table of another front-end: refused
    # a pretrained front-end brings its checkpoint's statistics; otherwise the training split's
    norm = input_statistics(spec.model, spec.model_config, table.kind) or normalisation(
        table, train_paths, cfg.norm
    )
    train_data = load_split(table, train_paths, norm)
    val_data = load_split(table, val_paths, norm)
    input_shape = tuple(table.data.shape[2:])  # (F, T)
    fit, weights = build_fit(spec, table, train_data, device, amp, ranks)
    model, optimizer = fit.model, fit.optimizer
    augment_generator = ranks.augment_generator(spec.seed, generator)
    key = run_key(spec, train_paths, val_paths, table.labels, table.frontend_key, ranks.world)
    if resume is not None and resume["run_key"] != key:
        raise ValueError(
            "the state to resume from was written for other params or data (see find_resumable)"
        )
    loop = (
        LoopState(token=uuid.uuid4().hex)
        if resume is None
        else restore(
            resume,
            model=model,
            optimizer=optimizer,
            scheduler=fit.scheduler,
            scaler=fit.scaler,
            generator=generator,
        )
    )
    if resume is not None:
        ranks.restore_random_states(resume, augment_generator)
        if fit.ema is not None:
            fit.ema.load_state_dict(resume["ema"])
    resumed_from = loop.epoch
    if weights:
        log_metrics(weights, 0)
    stopping = EarlyStopping.for_split(cfg.patience, cfg.watched_from, len(set(val_paths)))
    first = cfg.epochs + 1 if resume is not None and resume["finished"] else loop.epoch + 1
    waited = spent = 0.0
    started = time.monotonic()
    for epoch in range(first, cfg.epochs + 1):
        tr, timing = train_one_epoch(fit, train_data, generator, augment_generator)
        waited, spent = waited + timing["data_wait_s"], spent + timing["epoch_s"]
        if not math.isfinite(tr["loss"]):
            raise FloatingPointError(
                f"training loss is {tr['loss']} in epoch {epoch}; lower train.lr, raise "
                "train.warmup_epochs or set train.amp=off"
            )
        va = evaluate_split(fit.scored, val_data, table.labels, cfg.batch_size, device, amp, ranks)
        # validation is scored and early stopping decided once, on rank 0; every rank follows
        va, improved, stop = ranks.share(
            _early_stopping(va, loop, epoch, stopping) if ranks.writer else None
        )
        row = {
            "epoch": epoch,
            **{f"train_{k}": v for k, v in tr.items() if k != "grad_norm"},
            **{f"val_{k}": va[k] for k in ("loss", "accuracy", "macro_f1")},
            "lr": optimizer.param_groups[-1]["lr"],
            "grad_norm": tr["grad_norm"],
        }
        loop.history.append(row)
        log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
        if improved:
            loop.best_f1, loop.best_epoch = va["macro_f1"], epoch
        per_epoch = (time.monotonic() - started) / (epoch - first + 1)
        _log_epoch(fold, row, cfg.epochs, per_epoch, loop, stop, stopping.min_epochs)
        if improved and ranks.writer:
            save_checkpoint(
                checkpoint,
                model=fit.scored,
                model_name=spec.model,
                model_config=spec.model_config,
                labels=table.labels,
                norm=norm,
                params=spec.resolved(),
                input_shape=input_shape,
                in_channels=table.in_channels,
                frontend=table.meta["frontend"],
                frontend_key=table.frontend_key,
                epoch=epoch,
                val_macro_f1=loop.best_f1,
                mlflow_run_id=run_id,
                train_token=loop.token,
            )
        loop.epoch = epoch
        # every process's random states (a collective: every rank takes part), rank 0 writes
        streams = ranks.random_states(augment_generator) if last is not None else {}
        if fit.ema is not None and last is not None:
            streams["ema"] = fit.ema.state_dict()
        if last is not None and ranks.writer:
            save_last(
                last,
                model=model,
                optimizer=optimizer,
                scheduler=fit.scheduler,
                scaler=fit.scaler,
                generator=generator,
                loop=loop,
                run_key=key,
                run_id=run_id,
                finished=stop or epoch == cfg.epochs,
                extra=streams,
            )
        if stop:
            break
    return {
        "history": loop.history,
        "best_epoch": loop.best_epoch,
        "best_val_macro_f1": loop.best_f1,
        "n_parameters": count_parameters(model),
        "resumed_from_epoch": resumed_from,
        "device": device.type,
        "processes": ranks.world,
        "data_wait_share": round(waited / spent, 4) if spent else 0.0,
        **weights,
    }


def _early_stopping(
    va: dict, loop: LoopState, epoch: int, rule: EarlyStopping
) -> tuple[dict, bool, bool]:
    """Validation's scores, whether this epoch is the new best (:mod:`audioclf.training.stopping`),
    and whether training stops."""
    improved = rule.is_best(epoch, va["macro_f1"], va["loss"], loop.history, loop.best_epoch)
    return va, improved, rule.stops(epoch, epoch if improved else loop.best_epoch)


def _log_epoch(
    fold: int,
    row: dict,
    epochs: int,
    per_epoch_s: float,
    loop: LoopState,
    stop: bool,
    watched_from: int = 1,
) -> None:
    """One line per epoch: where training is, how it scores, how long it may still take (the ETA
    runs to ``epochs``; early stopping can end sooner), and the best epoch so far (before
    ``watched_from``, none is kept: :mod:`audioclf.training.stopping`)."""
    epoch = row["epoch"]
    best = (
        f"best {loop.best_f1:.4f} (epoch {loop.best_epoch})"
        if epoch >= watched_from
        else f"the best is kept from epoch {watched_from} on"
    )
    log.info(
        "train: fold %d: epoch %d/%d: train loss %.4f, val loss %.4f, val macro-F1 %.4f, lr %.2e, "
        "%.1f s/epoch, ETA %s, %s%s",
        fold,
        epoch,
        epochs,
        row["train_loss"],
        row["val_loss"],
        row["val_macro_f1"],
        row["lr"],
        per_epoch_s,
        eta(per_epoch_s * (epochs - epoch)),
        best,
        "; stopping early" if stop and epoch < epochs else "",
    )
