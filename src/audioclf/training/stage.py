"""The train stage's work: every fold of a split trained, resumed where a killed run left it.

:func:`train_folds` removes what a run with more folds left, finds each fold's
resumable state and decides which to reuse (:func:`audioclf.training.resume.plan_folds`),
trains each fold in its MLflow run (one run per training; for cross-validation a
parent run with one child per fold), and writes each fold's checkpoint, resumable
state and curves under :class:`FoldPaths`. Data-parallel, rank 0 does all of that and
sends the states to resume from to the other ranks, which train alongside it and write
nothing (:mod:`audioclf.training.distributed`).
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow

from audioclf.config.data import SplitConfig
from audioclf.config.features import ALL_LAYERS, FeaturesConfig
from audioclf.config.heads import HEAD_CONFIGS
from audioclf.config.schema import build, flatten
from audioclf.config.training import TrainSpec
from audioclf.data.split import Split
from audioclf.evaluation.bootstrap import fold_summary
from audioclf.features import encoder
from audioclf.features.birdnet import LICENCE as BIRDNET_LICENCE
from audioclf.features.opensmile import FEATURE_SETS
from audioclf.features.opensmile import LICENCE as OPENSMILE_LICENCE
from audioclf.features.table import FeatureTable
from audioclf.models.checkpoint import read_state
from audioclf.models.head import layer_weights
from audioclf.models.pretrained import pretrained_record
from audioclf.tracking import Runs, Store, log_curves, parent_run_id
from audioclf.training.classical import train_classical
from audioclf.training.curves import plot_curves, write_curves
from audioclf.training.distributed import SINGLE, Ranks
from audioclf.training.loop import train
from audioclf.training.resume import find_resumable, plan_folds, run_key

log = logging.getLogger(__name__)
FOLD = re.compile(r"fold_(\d+)(\.csv)?")


@dataclass(frozen=True)
class FoldPaths:
    """Where each fold's outputs go: ``models/fold_<n>/best.pt``, ``resume/fold_<n>/last.pt``,
    ``curves/fold_<n>.csv``."""

    models: Path
    resume: Path
    curves: Path

    def best(self, n: int) -> Path:
        return self.models / f"fold_{n}" / "best.pt"

    def last(self, n: int) -> Path:
        return self.resume / f"fold_{n}" / "last.pt"

    def curve(self, n: int) -> Path:
        return self.curves / f"fold_{n}.csv"


def remove_stale_folds(n_folds: int, paths: FoldPaths) -> list[Path]:
    """Delete the fold outputs numbered ``n_folds`` and up (left by a run with more folds); returns them."""
    stale = [
        p
        for folder in (paths.models, paths.resume, paths.curves)
        for p in folder.glob("fold_*")
        if (m := FOLD.fullmatch(p.name)) and int(m.group(1)) >= n_folds
    ]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return stale


def training_runs(
    store: Store,
    dataset: str,
    spec: TrainSpec,
    table: FeatureTable,
    split: SplitConfig,
    leakage: dict,
) -> Runs:
    """The MLflow runs of a training, in ``store``: named ``<model>-<loss>``, with all that shaped it as params
    (the spec and the front-end), and as tags the split, what the leakage audit let through
    (``leakage_audit``: e.g. ``near=48(warn)``, the findings that were kept, not failed), the
    front-end's kind, the licence of a front-end that brings one (:func:`licence_tags`), the
    input normalisation (:func:`norm_tags`) and, as tags and params, the pretrained weights'
    id, revision, resolved commit, sha256 and licence (:func:`pretrained_record`: fetched here
    on a first run)."""
    pretrained = pretrained_record(spec.model_config, spec.model)
    params = flatten({**spec.resolved(), "features": table.meta["frontend"]}) | pretrained
    kept = [
        f"{name}={c['count']}({c['level']})"
        for name, c in leakage.get("checks", {}).items()
        if c["count"] and c["level"] != "error"
    ]
    tags = {
        "leaky_split": str(split.leaky).lower(),
        "split_strategy": split.strategy,
        "leakage_audit": " ".join(kept) or "clean",
        "features_kind": table.kind,
        **licence_tags(table.kind),
        **encoder_tags(table.meta["frontend"]),
        **norm_tags(spec.train.norm),
        **pretrained,
    }
    return Runs(store, dataset, f"{spec.model}-{spec.loss}", params, tags)


def licence_tags(kind: str) -> dict[str, str]:
    """``model_licence`` for BirdNET's embeddings, ``features_licence`` for openSMILE's functionals.

    >>> licence_tags("compare")
    {'features_licence': 'audEERING research licence (openSMILE): no commercial use'}
    """
    if kind == "birdnet":
        return {"model_licence": f"BirdNET v2.4: {BIRDNET_LICENCE}"}
    return {"features_licence": OPENSMILE_LICENCE} if kind in FEATURE_SETS else {}


def encoder_tags(frontend: dict) -> dict[str, str]:
    """For ``features.kind: hf``, the encoder's id, revision, commit, weights and licence
    (:meth:`~audioclf.hub.Snapshot.record`, as ``encoder_*`` tags); else ``{}``."""
    if frontend.get("kind") != "hf":
        return {}
    cfg = build(FeaturesConfig, frontend, "features")
    record = encoder.snapshot(cfg).record()
    return {k.replace("pretrained_", "encoder_", 1): v for k, v in record.items()}


def norm_tags(norm: str) -> dict[str, str]:
    """``train_norm`` always; ``transductive: true`` for per-group statistics, which see every
    group's unlabelled files, the test groups' too."""
    return {"train_norm": norm, **({"transductive": "true"} if norm == "group" else {})}


SINGLE_CLASS_WARN = 0.5  # share of the training groups that hold one class only


def warn_single_class_groups(entries: list) -> float:
    """Warn when most training groups hold one class: ``train.norm: group`` then takes away what
    a class has in common (each recording of the synthetic data is one species). Reads the
    training split's labels for this warning only; the statistics never do. Returns the share.
    """
    classes: dict[str, set] = {}
    for e in entries:
        classes.setdefault(e.group, set()).add(e.label)
    share = sum(len(c) == 1 for c in classes.values()) / max(len(classes), 1)
    if share > SINGLE_CLASS_WARN:
        log.warning(
            "train: train.norm=group, but %.0f%% of the training split's %d groups hold a single "
            "class: standardising each group on its own removes what its class has in common "
            "(it suits groups holding several classes, e.g. speakers); consider train.norm=global",
            100 * share,
            len(classes),
        )
    return share


def train_folds(
    spec: TrainSpec,
    table: FeatureTable,
    folds: list[Split],
    paths: FoldPaths,
    runs: Runs,
    ranks: Ranks = SINGLE,
) -> dict:
    """Train ``spec`` on every fold (resuming an interrupted run), logging to ``runs``.

    Returns:
        The stage summary (``reports/train.json``): one fold's result, or for
        cross-validation the mean best validation macro-F1 and every fold's result
        (data-parallel: on rank 0; the other ranks return an empty dict).
    """
    files = [([e.path for e in f["train"]], [e.path for e in f["val"]]) for f in folds]
    if not ranks.writer:
        return _follow(spec, table, files, paths, ranks)
    remove_stale_folds(len(folds), paths)
    if spec.train.norm == "group":
        warn_single_class_groups(folds[0]["train"])
    keys = [
        run_key(spec, tr, va, table.labels, table.frontend_key, ranks.world) for tr, va in files
    ]
    found = [find_resumable(paths.last(n), paths.best(n), key) for n, key in enumerate(keys)]
    states = ranks.share(plan_folds([state for state, _ in found]))
    for n, ((_, note), state) in enumerate(zip(found, states, strict=True)):
        log.info(
            "train: fold %d: %s",
            n,
            note if state is not None or "fresh" in note else "starting fresh (rerun)",
        )
    cv = len(folds) > 1
    run_ids = [s["mlflow_run_id"] if s else None for s in states]
    parent_id = next((parent_run_id(runs.store, r) for r in run_ids if r), None)
    parent_id = parent_id if cv else run_ids[0]
    results = []
    with runs.open(run_id=parent_id) as parent:
        for n, ((train_paths, val_paths), state) in enumerate(zip(files, states, strict=True)):
            with runs.open_fold(n, run_id=run_ids[n]) if cv else runs.reuse(parent) as run:
                fit = (
                    train_classical
                    if spec.model in HEAD_CONFIGS
                    else functools.partial(train, fold=n)  # the fold, in its epoch lines
                )
                result = fit(
                    spec,
                    table,
                    train_paths,
                    val_paths,
                    paths.best(n),
                    log_metrics=log_curves,
                    run_id=run.info.run_id,
                    last=paths.last(n),
                    resume=state,
                    ranks=ranks,
                )
                results.append(_record_fold(n, result, paths, table.encoder_layer == ALL_LAYERS))
        summary = (
            results[0]
            if not cv
            else {
                "best_val_macro_f1": fold_summary([{"v": r["best_val_macro_f1"]} for r in results])[
                    "v"
                ]["mean"],
                "n_parameters": results[0]["n_parameters"],
                "folds": {str(n): r for n, r in enumerate(results)},
            }
        )
        if cv:
            mlflow.log_metric("best_val_macro_f1_mean", summary["best_val_macro_f1"])
    log.info(
        "train: %d fold(s), validation macro-F1 %.4f", len(folds), summary["best_val_macro_f1"]
    )
    return summary


def _follow(
    spec: TrainSpec, table: FeatureTable, files: list, paths: FoldPaths, ranks: Ranks
) -> dict:
    """A rank other than 0: trains every fold alongside rank 0, from the states it sends."""
    states = ranks.share(None)
    for n, ((train_paths, val_paths), state) in enumerate(zip(files, states, strict=True)):
        train(
            spec,
            table,
            train_paths,
            val_paths,
            paths.best(n),
            log_metrics=lambda m, step: None,
            last=paths.last(n),
            resume=state,
            ranks=ranks,
        )
    return {}


def _record_fold(n: int, result: dict, paths: FoldPaths, every_layer: bool = False) -> dict:
    """Log one fold's result to its (active) run and write its curves; returns what the summary keeps.

    A head on every layer of an encoder (``every_layer``) also logs the weight it learned for
    each layer, as ``layer_weights.json`` (``{"layer_weights": [w_0, ..., w_L]}``, w_0 the input
    to the first), read from the fold's best checkpoint.
    """
    history = result.pop("history")
    tags = ("device", "processes", "resumed_from_epoch")
    mlflow.set_tags({name: result.pop(name) for name in tags})
    # a timing: logged, but kept out of reports/train.json, which must be reproducible
    wait = result.pop("data_wait_share")
    mlflow.log_metric("data_wait_share", wait)
    log.info("train: fold %d: %.1f%% of training time spent waiting for data", n, 100 * wait)
    write_curves(history, paths.curve(n))
    mlflow.log_metrics(
        {"best_val_macro_f1": result["best_val_macro_f1"], "best_epoch": result["best_epoch"]}
    )
    mlflow.log_artifact(str(paths.best(n)), "checkpoints")
    weights = every_layer and layer_weights(
        read_state(paths.best(n), mmap=True).get("state_dict", {})
    )
    if weights:
        mlflow.log_dict({"layer_weights": weights}, "layer_weights.json")
    with tempfile.TemporaryDirectory() as tmp:
        plot_curves(history, Path(tmp) / f"train_curves_fold_{n}.png")
        mlflow.log_artifacts(tmp, "plots")
    return result
