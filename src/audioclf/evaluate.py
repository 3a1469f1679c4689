"""Test-set evaluation of checkpoints, once, at file level; pooled over folds for cross-validation."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audioclf.aggregate import bootstrap_ci, fold_summary, headline
from audioclf.checkpoint import load_checkpoint
from audioclf.features import FeatureStore
from audioclf.metrics import HEADLINE, aggregate_by_file, classification_metrics
from audioclf.train import load_split, predict


def evaluate(checkpoint: Path, store: FeatureStore, test_paths: list[str], batch_size: int) -> dict:
    """Score the checkpoint's model on the test files.

    Returns:
        ``metrics`` (see :func:`classification_metrics`), ``predictions`` (one dict per
        file: path, actual, predicted), ``probs`` (F, C), ``y_true`` (F,), ``labels`` and
        the checkpoint dict.
    """
    model, ckpt = load_checkpoint(checkpoint)
    if ckpt["labels"] != store.labels:
        raise ValueError(f"checkpoint {checkpoint} was trained on labels {ckpt['labels'][:5]}... but the feature "
                         f"cache has {store.labels[:5]}...; rerun training (dvc repro train)")
    data = load_split(store, test_paths, ckpt["norm"])
    probs, y_true, files = aggregate_by_file(predict(model, data.x, batch_size), data.y.numpy(), data.paths)
    labels = ckpt["labels"]
    y_pred = probs.argmax(axis=1)
    predictions = [{"path": f, "actual": labels[t], "predicted": labels[p]} for f, t, p in zip(files, y_true, y_pred)]
    return {"metrics": classification_metrics(y_true, probs, labels), "predictions": predictions,
            "probs": probs, "y_true": np.asarray(y_true), "labels": labels, "checkpoint": ckpt}


def evaluate_folds(checkpoints: list[Path], store: FeatureStore, test_lists: list[list[str]], *, batch_size: int,
                   n_boot: int, ci_level: float, seed: int) -> dict:
    """Evaluate each fold's checkpoint on its test list and summarise.

    ``test`` holds the headline metrics (the mean over folds for cross-validation, with
    ``test_std``); ``test_ci`` a bootstrap interval over the pooled test files of all
    folds (each file is tested in exactly one fold); ``per_class`` the per-class scores
    of the pooled predictions.

    Returns:
        ``summary`` (for metrics.json), ``per_class``, ``predictions`` (with ``fold``),
        ``folds`` (the per-fold :func:`evaluate` results), ``y_true``/``probs`` pooled.
    """
    folds = [evaluate(c, store, paths, batch_size) for c, paths in zip(checkpoints, test_lists)]
    y_true = np.concatenate([f["y_true"] for f in folds])
    probs = np.concatenate([f["probs"] for f in folds])
    labels = folds[0]["labels"]
    per_fold = [{m: f["metrics"][m] for m in HEADLINE} for f in folds]
    ci = bootstrap_ci(y_true, probs, n_boot=n_boot, level=ci_level, seed=seed)
    summary = {"test_ci": ci, "n": int(len(y_true))}
    if len(folds) == 1:
        summary["test"] = per_fold[0]
    else:
        stats = fold_summary(per_fold)
        summary.update(test={m: s["mean"] for m, s in stats.items()}, test_std={m: s["std"] for m, s in stats.items()},
                       test_pooled=headline(y_true, probs), folds={str(n): m for n, m in enumerate(per_fold)})
    predictions = [{**p, "fold": n} for n, f in enumerate(folds) for p in f["predictions"]]
    return {"summary": summary, "per_class": classification_metrics(y_true, probs, labels)["per_class"],
            "predictions": predictions, "folds": folds, "y_true": y_true, "probs": probs, "labels": labels}
