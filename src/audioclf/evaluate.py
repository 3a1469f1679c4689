"""Test-set evaluation of a checkpoint, once, at file level."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audioclf.checkpoint import load_checkpoint
from audioclf.features import FeatureStore
from audioclf.metrics import aggregate_by_file, classification_metrics
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
    if ckpt.get("frontend_key", store.frontend_key) != store.frontend_key:
        raise ValueError(f"checkpoint {checkpoint} was trained on features {ckpt['frontend_key']} but the feature "
                         f"cache holds {store.frontend_key}; rerun training (dvc repro train)")
    data = load_split(store, test_paths, ckpt["norm"])
    probs, y_true, files = aggregate_by_file(predict(model, data, batch_size), data.y.numpy(), data.paths)
    labels = ckpt["labels"]
    y_pred = probs.argmax(axis=1)
    predictions = [{"path": f, "actual": labels[t], "predicted": labels[p]} for f, t, p in zip(files, y_true, y_pred)]
    return {"metrics": classification_metrics(y_true, probs, labels), "predictions": predictions,
            "probs": probs, "y_true": np.asarray(y_true), "labels": labels, "checkpoint": ckpt}
