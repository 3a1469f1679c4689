"""The evaluate stage's work beyond scoring: the files it writes and what it logs to MLflow.

:func:`write_outputs` writes the metrics, per-class scores, per-file predictions and
probabilities, and figures of an :func:`audioclf.evaluation.evaluate.evaluate_folds`
result; :func:`log_evaluation` records the test metrics and those files in the training's
MLflow runs (each fold's child run too, for cross-validation), and logs the selected model --
the fold with the best validation macro-F1 -- as an MLflow Model in the training's run,
registered as ``audioclf-<dataset>`` (:mod:`audioclf.deploy.pyfunc`).
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

from audioclf.config.evaluation import EvaluateConfig
from audioclf.data.split import fold_names, read_test_lists
from audioclf.deploy.model import best_fold, undeployable
from audioclf.deploy.pyfunc import log_model, register
from audioclf.evaluation.buckets import training_counts
from audioclf.evaluation.evaluate import evaluate_folds
from audioclf.evaluation.plots import evaluation_figures
from audioclf.evaluation.predictions import write_probabilities
from audioclf.features.table import FeatureTable
from audioclf.io import atomic_path, write_json
from audioclf.tracking import Runs, parent_run_id

log = logging.getLogger(__name__)


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


def evaluate_stage(
    models: Path,
    table: FeatureTable,
    test_dir: Path,
    *,
    cfg: EvaluateConfig,
    seed: int,
    split_report: dict,
    leakage: dict,
) -> dict:
    """:func:`evaluate_folds` on what the stages before wrote: each fold's ``best.pt`` under
    ``models``, the test lists in ``test_dir`` (their folds decide: ``models`` persists and may
    hold more), the training counts of the split report, and the test files the leakage audit
    flagged at its ``exclude`` level."""
    names = fold_names(test_dir)
    return evaluate_folds(
        [models / n / "best.pt" for n in names],
        table,
        read_test_lists(test_dir, names),
        cfg=cfg,
        seed=seed,
        train_counts=training_counts(split_report),
        exclude=leakage.get("exclude"),
    )


def write_outputs(
    out: dict, paths: EvaluationPaths, cfg: EvaluateConfig, leaky_split: bool
) -> list[Path]:
    """Write every output of the stage; returns the paths written. ``metrics.json`` is tagged ``leaky_split``."""
    write_json({**out["summary"], "leaky_split": leaky_split}, paths.metrics)
    write_json(out["per_class"], paths.per_class)
    with atomic_path(paths.predictions) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["fold", "path", "actual", "predicted"])
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


def log_evaluation(runs: Runs, out: dict, files: list[Path]) -> None:
    """Test metrics (with their intervals and buckets) and ``files`` into the runs that trained the checkpoints."""
    summary = out["summary"]
    run_ids = [f["checkpoint"].get("mlflow_run_id") for f in out["folds"]]
    cv = len(run_ids) > 1
    with runs.open(run_id=parent_run_id(run_ids[0]) if cv else run_ids[0]):
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
        mlflow.log_metrics(
            {f"test_{k}": v for k, v in summary["test"].items()},
            model_id=info.model_id if info else None,
        )
        mlflow.log_metrics({f"test_{k}_std": v for k, v in summary.get("test_std", {}).items()})
        mlflow.log_metrics(
            {
                f"test_{b}_macro_f1": v["macro_f1"]
                for b, v in summary["buckets"].items()
                if "macro_f1" in v
            }
        )
        mlflow.log_metrics(
            {
                f"test_{k}_ci_{side}": v[side]
                for k, v in summary["test_ci"].items()
                for side in ("low", "high")
            }
        )
        for path in files:
            mlflow.log_artifact(str(path), "evaluation")
        try:
            if info:
                register(info.model_uri, runs.dataset, summary["test"])
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
