"""Training on the shrunk synthetic set: it learns, it is deterministic, and evaluate
agrees with what train measured on the same split."""
import dataclasses

import pytest

from audioclf.evaluate import evaluate
from audioclf.features import FeatureStore
from audioclf.train import train


@pytest.fixture(scope="module")
def prepared(tiny_cache):
    from tests.conftest import repo_params, shrink
    from audioclf.config import parse_params

    params = parse_params(shrink(repo_params()))
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, epochs=15, patience=15))
    cache, splits = tiny_cache
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    return params, FeatureStore(cache), paths


def test_learns_well_above_chance_and_evaluate_agrees(prepared, tmp_path):
    params, store, paths = prepared
    logged = []
    result = train(params, store, paths["train"], paths["val"], tmp_path / "best.pt",
                   log_metrics=lambda m, step: logged.append((step, m)))
    chance = 1 / len(store.labels)
    assert result["best_val_macro_f1"] > chance + 0.4
    assert len(logged) == len(result["history"]) and "val_macro_f1" in logged[0][1]
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    val = evaluate(tmp_path / "best.pt", store, paths["val"], batch_size=7)
    assert val["metrics"]["macro_f1"] == pytest.approx(result["best_val_macro_f1"], abs=1e-9)
    test = evaluate(tmp_path / "best.pt", store, paths["test"], batch_size=64)
    assert test["metrics"]["macro_f1"] > chance + 0.3


def test_same_seed_same_history(prepared, tmp_path):
    params, store, paths = prepared
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, epochs=2))
    runs = [train(params, store, paths["train"], paths["val"], tmp_path / f"{i}.pt", lambda m, s: None)["history"]
            for i in range(2)]
    assert runs[0] == runs[1]
