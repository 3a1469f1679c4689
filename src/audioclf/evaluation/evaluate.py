"""The evaluate stage: each fold's best checkpoint scored once on its test files, at file level;
pooled over folds for cross-validation; written and logged to MLflow.

:func:`evaluate_stage` scores what the stages before wrote (:func:`evaluate_folds`, each fold by
:func:`evaluate`); :func:`write_outputs` writes the metrics, per-class scores, per-file
predictions and probabilities, and figures; :func:`log_evaluation` records the test metrics and
those files in the training's MLflow runs (each fold's child run too, for cross-validation), and
logs the selected model -- the fold with the best validation macro-F1 -- as an MLflow Model in
the training's run, registered as ``audioclf-<dataset>`` (:mod:`audioclf.deploy.pyfunc`).
Reads checkpoints and the feature table; imports nothing of training.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from audioclf.config.evaluation import EvaluateConfig
from audioclf.data.split import fold_names, read_test_lists
from audioclf.deploy.model import best_fold, undeployable
from audioclf.deploy.pyfunc import log_model, register
from audioclf.evaluation.bootstrap import bootstrap_ci, fold_summary
from audioclf.evaluation.buckets import assign_buckets, bucket_summary, training_counts
from audioclf.evaluation.metrics import (
    HEADLINE,
    aggregate_by_file,
    classification_metrics,
    headline,
)
from audioclf.evaluation.plots import evaluation_figures
from audioclf.evaluation.predictions import write_probabilities
from audioclf.features.table import FeatureTable, load_split
from audioclf.io import atomic_path, read_json, write_json
from audioclf.models.checkpoint import load_checkpoint
from audioclf.models.inference import segment_probabilities
from audioclf.tracking import Runs, parent_run_id

log = logging.getLogger(__name__)
TEST_TABLE = "evaluation/test_metrics.json"  # the run's artifact with every test figure


@dataclass(frozen=True)
class EvaluationPaths:
    """The evaluate stage's outputs (all named in dvc.yaml)."""

    metrics: Path  # headline metrics, buckets, intervals (JSON, DVC metrics)
    per_class: Path  # per-class precision/recall/F1 (JSON)
    predictions: Path  # per-file actual/predicted (CSV, DVC plots)
    probabilities: Path  # per-file class probabilities (CSV, read by comparisons)
    confusion: Path  # confusion matrix (PNG)
    per_class_plot: Path  # per-class F1 against training count (PNG)
    reliability: Path  # reliability diagram (PNG)

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """One required option per output: ``--metrics``, ``--per-class``, ..."""
        for f in dataclasses.fields(cls):
            ap.add_argument(f"--{f.name.replace('_', '-')}", type=Path, required=True)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvaluationPaths:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def evaluate(
    checkpoint: Path,
    table: FeatureTable,
    test_paths: list[str],
    batch_size: int,
    *,
    ece_bins: int = 15,
) -> dict:
    """Score the checkpoint's model on the test files.

    Returns:
        ``metrics`` (see :func:`classification_metrics`), ``predictions`` (one dict per
        file: path, actual, predicted), ``probs`` (F, C), ``y_true`` (F,), ``labels``, the
        checkpoint dict and its ``path``.
    """
    model, ckpt = load_checkpoint(checkpoint)
    if ckpt["labels"] != table.labels:
        raise ValueError(
            f"checkpoint {checkpoint} was trained on labels {ckpt['labels'][:5]}... but the feature "
            f"table has {table.labels[:5]}...; rerun training (dvc repro train)"
        )
    if ckpt.get("frontend_key", table.frontend_key) != table.frontend_key:
        raise ValueError(
            f"checkpoint {checkpoint} was trained on features {ckpt['frontend_key']} but the feature "
            f"table holds {table.frontend_key}; rerun training (dvc repro train)"
        )
    data = load_split(table, test_paths, ckpt["norm"])
    probs, y_true, files = aggregate_by_file(
        segment_probabilities(model, data, batch_size), data.y.numpy(), data.paths
    )
    labels = ckpt["labels"]
    y_pred = probs.argmax(axis=1)
    predictions = [
        {"path": f, "actual": labels[t], "predicted": labels[p]}
        for f, t, p in zip(files, y_true, y_pred, strict=True)
    ]
    return {
        "metrics": classification_metrics(y_true, probs, labels, ece_bins=ece_bins),
        "predictions": predictions,
        "probs": probs,
        "y_true": np.asarray(y_true),
        "labels": labels,
        "checkpoint": ckpt,
        "path": Path(checkpoint),
    }


def evaluate_folds(
    checkpoints: list[Path],
    table: FeatureTable,
    test_lists: list[list[str]],
    *,
    cfg: EvaluateConfig,
    seed: int,
    train_counts: dict[str, float],
    exclude: dict[str, list[str]] | None = None,
) -> dict:
    """Evaluate each fold's checkpoint on its test list and summarise.

    With ``exclude`` (fold number -> test files the leakage audit flagged, at its ``exclude``
    level), the summary also holds ``test_without_flagged``: the same metrics with those
    files left out, and ``flagged_test_files``, how many.

    ``test`` holds the headline metrics (the mean over folds for cross-validation, with
    ``test_std``); ``input_norm`` the checkpoints' input normalisation and ``transductive``
    whether it saw the test files (``train.norm: group``); ``buckets`` the macro-F1 of the head/mid/tail classes by training
    count (:mod:`audioclf.evaluation.buckets`); ``test_ci`` a bootstrap interval of each over the
    pooled test files of all folds (each file is tested in exactly one fold), resampling their
    groups (recordings, speakers) whole; ``n_groups`` counts them. Buckets
    and ``per_class`` are scored on the pooled predictions.

    Args:
        checkpoints: each fold's best checkpoint.
        table: the feature table.
        test_lists: each fold's test files.
        cfg: inference batch, bootstrap resamples and level, calibration bins, bucket thresholds.
        seed: seeds the bootstrap.
        train_counts: class name -> training clips (mean over folds), from the split report.

    Returns:
        ``summary`` (for metrics.json), ``per_class``, ``predictions`` (with ``fold``),
        ``folds`` (the per-fold :func:`evaluate` results), ``y_true``/``probs`` pooled,
        ``labels``, ``train_counts`` (C,) and ``bucket_of`` (C,) in label order.
    """
    ece_bins, head, tail = cfg.ece_bins, cfg.buckets.head, cfg.buckets.tail
    folds = [
        evaluate(c, table, paths, cfg.batch_size, ece_bins=ece_bins)
        for c, paths in zip(checkpoints, test_lists, strict=True)
    ]
    y_true = np.concatenate([f["y_true"] for f in folds])
    probs = np.concatenate([f["probs"] for f in folds])
    labels = folds[0]["labels"]
    missing = [lab for lab in labels if lab not in train_counts]
    if missing:
        raise ValueError(
            f"no training count for class(es) {missing[:5]} in the split report (rerun: dvc repro)"
        )
    counts = np.array([train_counts[lab] for lab in labels], dtype=float)  # (C,)
    bucket_of = assign_buckets(counts, head=head, tail=tail)  # (C,)
    pooled = classification_metrics(y_true, probs, labels, ece_bins=ece_bins)
    per_class = pooled["per_class"]
    f1 = np.array([per_class[lab]["f1"] for lab in labels])
    support = np.array([per_class[lab]["support"] for lab in labels])
    per_fold = [{m: f["metrics"][m] for m in HEADLINE} for f in folds]
    group_of = {row.path: row.group for row in table.rows}
    predictions = [
        {**p, "fold": n, "group": group_of[p["path"]]}
        for n, f in enumerate(folds)
        for p in f["predictions"]
    ]
    groups = np.array([p["group"] for p in predictions])
    ci = bootstrap_ci(
        y_true,
        probs,
        n_boot=cfg.bootstrap,
        level=cfg.ci_level,
        seed=seed,
        ece_bins=ece_bins,
        bucket_of=bucket_of,
        groups=groups,  # a recording's files together: they are not independent
    )
    # {low, high} rather than a pair: DVC shows nested numbers in `dvc exp show`, not lists
    norm = folds[0]["checkpoint"]["norm"].get("kind", "global")
    summary = {
        "test_ci": {m: {"low": lo, "high": hi} for m, (lo, hi) in ci.items()},
        "n": int(len(y_true)),
        "n_groups": int(len(np.unique(groups))),  # what the interval resamples
        "buckets": bucket_summary(f1, support, counts, bucket_of),
        # next to the metrics: per-group statistics saw the test groups' (unlabelled) files
        "input_norm": norm,
        "transductive": norm == "group",
    }
    if len(folds) == 1:
        summary["test"] = per_fold[0]
    else:
        stats = fold_summary(per_fold)
        summary.update(
            test={m: s["mean"] for m, s in stats.items()},
            test_std={m: s["std"] for m, s in stats.items()},
            test_pooled=headline(y_true, probs, ece_bins=ece_bins),
            folds={str(n): m for n, m in enumerate(per_fold)},
        )
    if exclude and any(exclude.values()):
        flagged = [set(exclude.get(str(n), ())) for n in range(len(test_lists))]
        kept = [
            [p for p in paths if p not in f] for paths, f in zip(test_lists, flagged, strict=True)
        ]
        again = evaluate_folds(
            checkpoints, table, kept, cfg=cfg, seed=seed, train_counts=train_counts
        )
        summary["test_without_flagged"] = again["summary"]["test"]
        summary["flagged_test_files"] = sum(
            len(t) - len(k) for t, k in zip(test_lists, kept, strict=True)
        )
    return {
        "summary": summary,
        "per_class": per_class,
        "predictions": predictions,
        "folds": folds,
        "y_true": y_true,
        "probs": probs,
        "labels": labels,
        "train_counts": counts,
        "bucket_of": bucket_of,
    }


def evaluate_stage(
    models: Path,
    features: Path,
    test_dir: Path,
    split_report: Path,
    leakage: Path,
    *,
    cfg: EvaluateConfig,
    seed: int,
) -> dict:
    """:func:`evaluate_folds` on what the stages before wrote: each fold's ``best.pt`` under
    ``models``, the feature table at ``features``, the test lists in ``test_dir`` (their folds
    decide: ``models`` persists and may hold more), the training counts of the split report, and
    the test files the leakage audit's report flags at its ``exclude`` level."""
    names = fold_names(test_dir)
    return evaluate_folds(
        [models / n / "best.pt" for n in names],
        FeatureTable(features),
        read_test_lists(test_dir, names),
        cfg=cfg,
        seed=seed,
        train_counts=training_counts(read_json(split_report)),
        exclude=read_json(leakage).get("exclude"),
    )


def write_outputs(
    out: dict, paths: EvaluationPaths, cfg: EvaluateConfig, leaky_split: bool
) -> list[Path]:
    """Write every output of the stage; returns the paths written. ``metrics.json`` is tagged
    ``leaky_split``."""
    write_json({**out["summary"], "leaky_split": leaky_split}, paths.metrics)
    write_json(out["per_class"], paths.per_class)
    with atomic_path(paths.predictions) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["fold", "path", "actual", "predicted", "group"])
        writer.writeheader()
        writer.writerows(out["predictions"])
    write_probabilities(paths.probabilities, out["predictions"], out["probs"], out["labels"])
    figures = evaluation_figures(
        out,
        confusion=paths.confusion,
        per_class=paths.per_class_plot,
        reliability=paths.reliability,
        head=cfg.buckets.head,
        tail=cfg.buckets.tail,
        ece_bins=cfg.ece_bins,
    )
    return [paths.metrics, paths.per_class, paths.predictions, paths.probabilities, *figures]


def test_table(summary: dict) -> dict[str, list]:
    """The test metrics of ``summary`` (``reports/metrics.json``) as columns ``metric``, ``value``,
    ``ci_low``, ``ci_high`` and, over folds, ``std``: one row per metric and per bucket's
    macro-F1 (``tail_macro_f1``...). A missing figure is None.

    >>> test_table({"test": {"macro_f1": 0.5}, "test_ci": {"macro_f1": {"low": 0.4, "high": 0.6}},
    ...             "buckets": {"tail": {"macro_f1": 0.1}}})["ci_low"]
    [0.4, None]
    """
    values = {
        **summary["test"],
        **{
            f"{b}_macro_f1": v["macro_f1"] for b, v in summary["buckets"].items() if "macro_f1" in v
        },
    }
    ci, std = summary.get("test_ci", {}), summary.get("test_std", {})
    table = {
        "metric": list(values),
        "value": list(values.values()),
        "ci_low": [ci.get(k, {}).get("low") for k in values],
        "ci_high": [ci.get(k, {}).get("high") for k in values],
    }
    if std:
        table["std"] = [std.get(k) for k in values]
    return table


def log_evaluation(runs: Runs, out: dict, files: list[Path]) -> None:
    """Test metrics (with their intervals and buckets) and ``files`` into the runs that trained
    the checkpoints; the selected model's registered version is tagged with the DVC experiment."""
    summary = out["summary"]
    run_ids = [f["checkpoint"].get("mlflow_run_id") for f in out["folds"]]
    cv = len(run_ids) > 1
    with runs.open(run_id=parent_run_id(runs.store, run_ids[0]) if cv else run_ids[0]):
        for n, fold in enumerate(out["folds"]):
            with runs.open_fold(n, run_id=run_ids[n]) if cv else contextlib.nullcontext():
                mlflow.log_metrics({f"test_{k}": fold["metrics"][k] for k in summary["test"]})
        # the selected model (best validation macro-F1) as an MLflow Model; the headline test
        # metrics are linked to it, so its registered version shows them
        selected = out["folds"][best_fold([f["checkpoint"] for f in out["folds"]])]
        if reason := undeployable(selected["checkpoint"]):
            log.warning("evaluate: no MLflow Model logged or registered: %s", reason)
            mlflow.set_tag("mlflow_model", f"not logged: {reason}")
            info = None
        else:
            info = log_model(selected["path"])
            # the run page's tags name it; the Overview's "Logged models" links to it
            mlflow.set_tag("mlflow_model", info.model_uri)
        mlflow.log_metrics(
            {f"test_{k}": v for k, v in summary["test"].items()},
            model_id=info.model_id if info else None,
        )
        # the intervals, spreads and buckets as one table, not one single-point chart each
        # ahead of the training curves on the run's metrics tab
        mlflow.log_table(test_table(summary), TEST_TABLE)
        for path in files:
            mlflow.log_artifact(str(path), "evaluation")
        try:
            if info:
                register(info.model_uri, runs.dataset, summary["test"], dvc_exp_name=runs.exp_name)
        except mlflow.exceptions.MlflowException as exc:  # a store without a model registry
            log.warning("evaluate: the model was logged but not registered: %s", exc)
    test, std = summary["test"], summary.get("test_std", {}).get("macro_f1")
    log.info(
        "evaluate: %d fold(s), test accuracy %.4f, macro-F1 %.4f%s, mAP %.4f%s",
        len(run_ids),
        test["accuracy"],
        test["macro_f1"],
        f" ± {std:.4f}" if cv else "",
        test["macro_map"],
        " (train.norm=group: transductive, each group standardised on its own files)"
        if summary.get("transductive")
        else "",
    )
