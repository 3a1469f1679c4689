"""Training on the shrunk synthetic set: it learns, it is deterministic, and evaluate
agrees with what train measured on the same split."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from audioclf.data.split import grouped_split
from audioclf.evaluation.evaluate import evaluate
from audioclf.features.extract import extract_features
from audioclf.features.table import FeatureTable, load_split
from audioclf.models.checkpoint import load_checkpoint
from audioclf.training.data import normalisation
from audioclf.training.loop import evaluate_split, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prepared(tiny_cache):
    from tests.conftest import repo_params, shrink

    from audioclf.config import parse_params

    params = parse_params(shrink(repo_params()))
    # 10 epochs: validation macro-F1 ~0.9, test ~0.65 on the 6 classes (chance 0.17)
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, epochs=10, patience=10)
    )
    cache, splits = tiny_cache
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    return params, FeatureTable(cache), paths


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["last-step weights", "averaged weights"])
def test_learns_well_above_chance_and_evaluate_agrees(prepared, tmp_path, ema):
    params, store, paths = prepared
    # train.ema: the averaged weights are both validated and saved (evaluate agrees with them)
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, ema=ema))
    logged = []
    result = train(
        params.train_spec(),
        store,
        paths["train"],
        paths["val"],
        tmp_path / "best.pt",
        log_metrics=lambda m, step: logged.append((step, m)),
    )
    chance = 1 / len(store.labels)
    assert result["best_val_macro_f1"] > chance + 0.4
    assert len(logged) == len(result["history"]) and "val_macro_f1" in logged[0][1]
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    val = evaluate(tmp_path / "best.pt", store, paths["val"], batch_size=7)
    assert val["metrics"]["macro_f1"] == pytest.approx(result["best_val_macro_f1"], abs=1e-9)
    # the saved weights are the validated ones: the same validation loss, to float precision
    model, ckpt = load_checkpoint(tmp_path / "best.pt")
    scored = evaluate_split(model, load_split(store, paths["val"], ckpt["norm"]), store.labels, 7)
    best = result["history"][result["best_epoch"] - 1]
    assert scored["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    test = evaluate(tmp_path / "best.pt", store, paths["test"], batch_size=64)
    assert test["metrics"]["macro_f1"] > chance + 0.3
    assert 0 <= result["data_wait_share"] < 0.5


def test_same_seed_same_history(prepared, tmp_path):
    params, store, paths = prepared
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, epochs=2))
    runs = [
        train(
            params.train_spec(),
            store,
            paths["train"],
            paths["val"],
            tmp_path / f"{i}.pt",
            lambda m, s: None,
        )["history"]
        for i in range(2)
    ]
    assert runs[0] == runs[1]


def test_balanced_sampler_accumulation_and_weighted_loss_train_and_log_weights(prepared, tmp_path):
    from audioclf.training.data import epoch_order

    params, store, paths = prepared
    params = dataclasses.replace(
        params,
        loss="weighted_ce",
        train=dataclasses.replace(
            params.train,
            epochs=2,
            sampler="balanced",
            accumulate=2,
            schedule="step",
            step_epochs=1,
            step_gamma=0.5,
        ),
    )
    logged = []
    result = train(
        params.train_spec(),
        store,
        paths["train"],
        paths["val"],
        tmp_path / "best.pt",
        lambda m, step: logged.append((step, m)),
    )
    assert (
        logged[0][0] == 0
        and logged[0][1]["class_weight_max"] >= logged[0][1]["class_weight_min"] > 0
    )
    assert result["class_weight_max"] == logged[0][1]["class_weight_max"]
    lrs = [row["lr"] for row in result["history"]]
    assert lrs == pytest.approx(
        [params.train.lr * 0.5, params.train.lr * 0.25]
    )  # after each epoch's steps
    assert all(row["grad_norm"] > 0 for row in result["history"])
    y = torch.tensor([0] * 90 + [1] * 10)
    drawn = torch.bincount(
        y[epoch_order(y, "balanced", torch.Generator().manual_seed(0))], minlength=2
    )
    assert abs(drawn[0] - drawn[1]) < 30  # ~50/50 despite 90/10


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains_and_resumes(prepared, tmp_path, amp):
    from audioclf.training.resume import find_resumable, run_key

    params, store, paths = prepared
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, epochs=3, device="cuda", amp=amp)
    )

    def kill_in_epoch_2(metrics, step):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            params.train_spec(),
            store,
            paths["train"],
            paths["val"],
            tmp_path / "best.pt",
            kill_in_epoch_2,
            last=tmp_path / "last.pt",
        )
    key = run_key(
        params.train_spec(), paths["train"], paths["val"], store.labels, store.frontend_key
    )
    state, note = find_resumable(tmp_path / "last.pt", tmp_path / "best.pt", key)
    assert state is not None, note
    result = train(
        params.train_spec(),
        store,
        paths["train"],
        paths["val"],
        tmp_path / "best.pt",
        lambda m, s: None,
        last=tmp_path / "last.pt",
        resume=state,
    )
    assert (
        result["device"] == "cuda"
        and result["resumed_from_epoch"] == 1
        and len(result["history"]) == 3
    )
    assert all(math.isfinite(r["train_loss"]) for r in result["history"])
    assert math.isfinite(
        result["history"][-1]["grad_norm"]
    )  # fp16: early steps may all overflow, not the last
    val = evaluate(
        tmp_path / "best.pt", store, paths["val"], batch_size=16
    )  # on the CPU, in float32
    assert val["metrics"]["macro_f1"] == pytest.approx(result["best_val_macro_f1"], abs=0.15)


@pytest.mark.parametrize("kind, shape", [("global", (1,)), ("band", (1, 32))])
def test_normalisation_comes_from_the_train_rows_only(prepared, kind, shape):
    _, store, paths = prepared
    norm = normalisation(store, paths["train"], kind, chunk=7)
    x, _, _ = store.select(paths["train"])  # (S, 1, 32, T)
    axes = (0, 2, 3) if kind == "global" else (0, 3)
    assert np.shape(norm["mean"]) == shape and norm["kind"] == kind
    np.testing.assert_allclose(norm["mean"], x.mean(axis=axes, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(norm["std"], x.std(axis=axes, dtype=np.float64), rtol=1e-5)
    other = normalisation(store, paths["val"], kind)
    assert not np.allclose(norm["mean"], other["mean"], rtol=1e-4)
    data = load_split(store, paths["train"], norm)
    xb = data.batch(np.arange(len(data)))  # (S, 1, 32, T), normalised
    reduce = (0, 2, 3) if kind == "global" else (0, 3)
    np.testing.assert_allclose(xb.mean(dim=reduce).numpy(), 0.0, atol=1e-3)
    np.testing.assert_allclose(xb.std(dim=reduce, correction=0).numpy(), 1.0, atol=1e-3)


def test_scalar_statistics_of_older_checkpoints_still_apply(prepared):
    _, store, paths = prepared
    data = load_split(store, paths["val"], {"mean": -40.0, "std": 10.0})
    x, _, _ = store.select(paths["val"])
    torch.testing.assert_close(data.batch([0, 1]), (torch.from_numpy(x[:2]) + 40.0) / 10.0)


def test_mfcc_features_train_a_three_channel_model(tiny_dataset, tmp_path):
    from tests.conftest import repo_params, shrink

    from audioclf.config import parse_params

    raw = shrink(repo_params())
    raw["features"].update(kind="mfcc", n_mfcc=13)
    raw["train"].update(epochs=1, norm="band")
    params = parse_params(raw)
    root, entries = tiny_dataset
    extract_features(
        entries, root, params.features, tmp_path / "features", store_dir=tmp_path / "store"
    )
    store = FeatureTable(tmp_path / "features")
    splits = grouped_split(entries, {"train": 0.6, "val": 0.2, "test": 0.2}, params.seed)
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    train(
        params.train_spec(),
        store,
        paths["train"],
        paths["val"],
        tmp_path / "best.pt",
        lambda m, s: None,
    )
    model, ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["in_channels"] == 3 and ckpt["frontend_key"] == store.frontend_key
    assert np.shape(ckpt["norm"]["mean"]) == (3, 13)
    assert evaluate(tmp_path / "best.pt", store, paths["test"], batch_size=16)["probs"].shape[
        1
    ] == len(store.labels)


def test_a_table_of_another_front_end_is_refused_before_training(prepared, tmp_path):
    """A stale table (log-mel) under a model that reads another front-end fails, naming both."""
    from audioclf.config.models import ASTConfig, EmbeddingHeadConfig
    from audioclf.config.schema import ParamsError

    params, store, paths = prepared
    for model, cfg, message in (
        ("birdnet", EmbeddingHeadConfig(), "but model=birdnet reads BirdNET"),
        ("ast", ASTConfig(), "'logmel', which does not fit model=ast with pretrained weights"),
    ):
        spec = dataclasses.replace(params.train_spec(), model=model, model_config=cfg)
        with pytest.raises(ParamsError, match=message):
            train(spec, store, paths["train"], paths["val"], tmp_path / "x.pt", lambda m, s: None)
        assert not (tmp_path / "x.pt").exists()
