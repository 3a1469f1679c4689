"""A model trained on the shrunk synthetic set, shared by the deploy tests: (checkpoint, dataset
folder, {split: entries}). Trained as the pipeline trains it (15 epochs), on the train split only.
Also the helpers that compare another way of scoring with ``audioclf predict``'s tables."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from audioclf.config import parse_params
from audioclf.deploy import predict
from audioclf.features.table import FeatureTable
from audioclf.training.loop import train


def train_tiny(tiny_cache, checkpoint: Path, **train_params) -> Path:
    """Train the shrunk params' model on the tiny cache's train split into ``checkpoint``,
    ``train_params`` overriding ``params.train`` (epochs, norm, ...)."""
    from tests.conftest import repo_params, shrink

    params = parse_params(shrink(repo_params()))
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, **train_params))
    cache, splits = tiny_cache
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    train(
        params.train_spec(),
        FeatureTable(cache),
        paths["train"],
        paths["val"],
        checkpoint,
        log_metrics=lambda metrics, step: None,
    )
    return checkpoint


@pytest.fixture(scope="session")
def trained(tiny_dataset, tiny_cache, tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("trained") / "fold_0" / "best.pt"
    train_tiny(tiny_cache, checkpoint, epochs=15, patience=15)
    root, _ = tiny_dataset
    return checkpoint, root, tiny_cache[1]


def predict_rows(files: list[str], checkpoint: Path, out: Path) -> list[dict]:
    """``audioclf predict``'s windows.csv rows for ``files`` (top 2 of every window)."""
    args = ["--model", str(checkpoint), "--out", str(out), "--top-k", "2", "--min-score", "0"]
    predict.main([*files, *args])
    with open(out / "windows.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def same_answers(rows: list[dict], files: list[str], answer: list[dict]) -> None:
    """The pyfunc's rows (input = position in ``files``) against windows.csv's, to its 6 decimals."""
    assert len(answer) == len(rows)
    for want, got in zip(rows, answer, strict=True):
        assert files[int(got["input"])] == want["file"]
        assert (got["label"], int(got["rank"]), got["fill"], got["error"]) == (
            want["label"],
            int(want["rank"]),
            want["fill"],
            "",
        )
        assert f"{got['start_s']:.6f}" == want["start_s"] and f"{got['end_s']:.6f}" == want["end_s"]
        assert abs(got["score"] - float(want["score"])) <= 5e-7
