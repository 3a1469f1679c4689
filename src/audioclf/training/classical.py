"""Training a scikit-learn head (``model: logreg | svm``): its hyper-parameters chosen on validation.

Every setting of the head's grid (:meth:`audioclf.config.heads.SVMConfig.grid`; ``C`` for
``logreg``) is fitted on the training split and scored on the validation split at file level,
as a network's epochs are; the best validation macro-F1 wins (ties: the smaller ``C``, the
more regularised). The test split is never read. The chosen pipeline is saved in MLflow's
scikit-learn flavour beside the fold's ``best.pt`` (:mod:`audioclf.models.classical`) and
logged to the active run in the same flavour.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np

from audioclf.config.frontends import check_pair
from audioclf.config.heads import LogRegConfig
from audioclf.config.training import TrainSpec
from audioclf.errors import UserError
from audioclf.features.table import FeatureTable, SplitData, load_split
from audioclf.io import write_json
from audioclf.models.checkpoint import save_checkpoint
from audioclf.models.classical import (
    MODEL_FOLDER,
    PLATT_FOLDS,
    SklearnHead,
    build_estimator,
    flat,
    log_head,
    n_parameters,
    save_head,
)
from audioclf.training.data import normalisation
from audioclf.training.distributed import SINGLE, Ranks
from audioclf.training.loop import MetricsLogger, evaluate_split

log = logging.getLogger(__name__)
NOTE = "not_resumable.json"
NOTHING_TO_RESUME = "a scikit-learn head fits in seconds: a rerun fits it again"


class TooFewError(UserError, ValueError):
    """A training split too small for the head (the SVM's calibration folds)."""


def grid(cfg) -> list[dict]:
    """The settings to try, smallest ``C`` first: the SVM's own grid, or ``logreg``'s ``C`` values."""
    if isinstance(cfg, LogRegConfig):
        return [{"C": c} for c in sorted(cfg.C)]
    return cfg.grid()


def train_classical(
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
) -> dict:
    """Fit ``spec.model``'s grid on the train split and keep the setting best on validation.

    Takes the arguments of :func:`audioclf.training.loop.train` and returns the same keys. A
    head fits in seconds: ``resume`` is ignored and a rerun fits again; ``last``'s folder gets
    a note saying so in place of a resumable state. ``history`` has one row per setting
    (``epoch``: its number in the grid, with its ``C`` and ``gamma``); ``selected`` is the
    setting kept.
    """
    check_pair(table.kind, spec.model, spec.model_config, encoder_layer=table.encoder_layer)
    norm = normalisation(table, train_paths, spec.train.norm)
    train_data, val_data = load_split(table, train_paths, norm), load_split(table, val_paths, norm)
    history, (head, setting, best_k) = _fit_grid(spec, table, train_data, val_data, log_metrics)
    save_head(head.estimator, checkpoint.parent / MODEL_FOLDER)
    save_checkpoint(
        checkpoint,
        model=head,
        model_name=spec.model,
        model_config=spec.model_config,
        labels=table.labels,
        norm=norm,
        params=spec.resolved(),
        input_shape=tuple(table.data.shape[2:]),
        in_channels=table.in_channels,
        frontend=table.meta["frontend"],
        frontend_key=table.frontend_key,
        epoch=best_k,
        val_macro_f1=history[best_k - 1]["val_macro_f1"],
        mlflow_run_id=run_id,
        sklearn_model=MODEL_FOLDER,
        selected=setting,
    )
    if last is not None:  # the stage's resume folder is an output: it exists, saying why
        note = {"model": spec.model, "resumable": False, "why": NOTHING_TO_RESUME}
        write_json(note, last.with_name(NOTE))
    if mlflow.active_run() is not None:
        mlflow.set_tags({f"selected_{k}": str(v) for k, v in setting.items()})
        log_head(head.estimator)
    return {
        "history": history,
        "best_epoch": best_k,
        "best_val_macro_f1": history[best_k - 1]["val_macro_f1"],
        "n_parameters": n_parameters(head.estimator),
        "resumed_from_epoch": 0,
        "device": "cpu",
        "processes": ranks.world,  # 1: params refuse a head on more than one process
        "data_wait_share": 0.0,
        "selected": setting,
    }


def _fit_grid(
    spec: TrainSpec,
    table: FeatureTable,
    train_data: SplitData,
    val_data: SplitData,
    log_metrics: MetricsLogger,
) -> tuple[list[dict], tuple[SklearnHead, dict, int]]:
    """Every setting fitted on ``train_data`` and scored on both splits at file level.

    Returns:
        One history row per setting, and the best on validation: (head, setting, its number).
    """
    x = flat(train_data.batch(np.arange(len(train_data))))  # (S, D)
    y = train_data.y.numpy()
    # the SVM's calibration folds: 5, or as many as the rarest class has segments (at least 2)
    folds = min(PLATT_FOLDS, int(np.bincount(y)[np.unique(y)].min()))
    if spec.model == "svm" and folds < 2:
        raise TooFewError(
            "model=svm calibrates its probabilities on stratified folds of the training split, "
            "and a class has a single training segment; use model=logreg, or a split with more "
            "training clips per class"
        )
    n_classes, batch = len(table.labels), spec.train.batch_size
    history, best, best_f1 = [], None, -1.0
    for k, setting in enumerate(grid(spec.model_config), start=1):
        estimator = build_estimator(spec.model, spec.model_config, setting, spec.seed, folds)
        head = SklearnHead(estimator.fit(x, y), n_classes)
        tr = evaluate_split(head, train_data, table.labels, batch)
        va = evaluate_split(head, val_data, table.labels, batch)
        row = {
            "epoch": k,
            **{f"train_{m}": tr[m] for m in ("loss", "accuracy", "macro_f1")},
            **{f"val_{m}": va[m] for m in ("loss", "accuracy", "macro_f1")},
            **setting,
        }
        history.append(row)
        log_metrics({m: v for m, v in row.items() if isinstance(v, float)}, k)
        log.info("train: %s %s: validation macro-F1 %.4f", spec.model, setting, va["macro_f1"])
        if va["macro_f1"] > best_f1:  # strictly: a tie keeps the smaller C
            best, best_f1 = (head, setting, k), va["macro_f1"]
    return history, best
