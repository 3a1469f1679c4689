"""Test-set evaluation of checkpoints, once, at file level; pooled over folds for cross-validation.

Reads checkpoints and the feature table; imports nothing of training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audioclf.config.evaluation import EvaluateConfig
from audioclf.evaluation.bootstrap import bootstrap_ci, fold_summary, headline
from audioclf.evaluation.buckets import assign_buckets, bucket_summary
from audioclf.evaluation.metrics import HEADLINE, aggregate_by_file, classification_metrics
from audioclf.features.table import FeatureTable, load_split
from audioclf.models.checkpoint import load_checkpoint
from audioclf.models.inference import predict


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
        predict(model, data, batch_size), data.y.numpy(), data.paths
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
    pooled test files of all folds (each file is tested in exactly one fold). Buckets
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
    ci = bootstrap_ci(
        y_true,
        probs,
        n_boot=cfg.bootstrap,
        level=cfg.ci_level,
        seed=seed,
        ece_bins=ece_bins,
        bucket_of=bucket_of,
    )
    # {low, high} rather than a pair: DVC shows nested numbers in `dvc exp show`, not lists
    norm = folds[0]["checkpoint"]["norm"].get("kind", "global")
    summary = {
        "test_ci": {m: {"low": lo, "high": hi} for m, (lo, hi) in ci.items()},
        "n": int(len(y_true)),
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
    predictions = [{**p, "fold": n} for n, f in enumerate(folds) for p in f["predictions"]]
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
