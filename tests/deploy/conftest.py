"""A model trained on the shrunk synthetic set, shared by the deploy tests: (checkpoint, dataset
folder, {split: entries}). Trained as the pipeline trains it (15 epochs), on the train split only."""

from __future__ import annotations

import dataclasses

import pytest

from audioclf.config import parse_params
from audioclf.features.table import FeatureTable
from audioclf.training.loop import train


@pytest.fixture(scope="session")
def trained(tiny_dataset, tiny_cache, tmp_path_factory):
    from tests.conftest import repo_params, shrink

    params = parse_params(shrink(repo_params()))
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, epochs=15, patience=15)
    )
    cache, splits = tiny_cache
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    checkpoint = tmp_path_factory.mktemp("trained") / "fold_0" / "best.pt"
    train(
        params.train_spec(),
        FeatureTable(cache),
        paths["train"],
        paths["val"],
        checkpoint,
        log_metrics=lambda metrics, step: None,
    )
    root, _ = tiny_dataset
    return checkpoint, root, splits
