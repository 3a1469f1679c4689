"""A killed training resumes from last.pt to exactly the uninterrupted result (CPU, same seed),
and starts fresh, saying why, when last.pt does not belong to this run."""
import dataclasses
import shutil

import pytest
import torch

from audioclf.augment import AugmentConfig
from audioclf.config import parse_params
from audioclf.features import FeatureStore
from audioclf.resume import find_resumable
from audioclf.train import train
from audioclf.train_config import MixupConfig, SpecAugmentConfig
from tests.conftest import repo_params, shrink


class Killed(Exception):
    """Stands in for the process being killed between epochs."""


def kill_at(epoch):
    def log(metrics, step):
        if step == epoch:
            raise Killed
    return log


@pytest.fixture(scope="module")
def setup(tiny_cache):
    cache, splits = tiny_cache
    params = parse_params(shrink(repo_params()))
    # dropout, MixUp and SpecAugment all draw random numbers: resuming must restore every random state
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, epochs=4, patience=4, warmup_epochs=1.0),
        augment=AugmentConfig(specaugment=SpecAugmentConfig(p=0.5, freq_width=4, time_width=4),
                              mixup=MixupConfig(p=0.5)))
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    return params, FeatureStore(cache), paths["train"], paths["val"]


@pytest.fixture(scope="module")
def runs(setup, tmp_path_factory):
    """An uninterrupted run, and one killed in epoch 3 (last.pt then holds epoch 2)."""
    params, store, tr, va = setup
    full, killed = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("killed")
    result = train(params, store, tr, va, full / "best.pt", lambda m, s: None, last=full / "last.pt")
    with pytest.raises(Killed):
        train(params, store, tr, va, killed / "best.pt", kill_at(3), last=killed / "last.pt")
    return result, full, killed


def test_resumed_run_equals_the_uninterrupted_one(setup, runs, tmp_path):
    params, store, tr, va = setup
    full_result, full, killed = runs
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    state, note = find_resumable(run / "last.pt", run / "best.pt", params, tr, va, store.labels)
    assert state is not None and note.startswith("resuming after epoch 2")
    result = train(params, store, tr, va, run / "best.pt", lambda m, s: None, last=run / "last.pt", resume=state)
    assert result["resumed_from_epoch"] == 2 and full_result["resumed_from_epoch"] == 0
    assert result["history"] == full_result["history"]
    assert result["best_epoch"] == full_result["best_epoch"]
    a, b = (torch.load(d / "best.pt", weights_only=False)["state_dict"] for d in (full, run))
    assert all(torch.equal(a[k], b[k]) for k in a)
    state, note = find_resumable(run / "last.pt", run / "best.pt", params, tr, va, store.labels)
    assert state is None and "finished training" in note


def test_other_params_start_fresh(setup, runs):
    params, store, tr, va = setup
    _, _, killed = runs
    other = dataclasses.replace(params, raw={**params.raw, "seed": 7})
    state, note = find_resumable(killed / "last.pt", killed / "best.pt", other, tr, va, store.labels)
    assert state is None and "other params, splits, classes, device or precision" in note
    state, note = find_resumable(killed / "last.pt", killed / "best.pt", params, tr[1:], va, store.labels)
    assert state is None


def test_missing_or_foreign_best_checkpoint_starts_fresh(setup, runs, tmp_path):
    params, store, tr, va = setup
    _, full, killed = runs
    state, note = find_resumable(killed / "last.pt", tmp_path / "best.pt", params, tr, va, store.labels)
    assert state is None and "missing or from another training" in note
    state, _ = find_resumable(killed / "last.pt", full / "best.pt", params, tr, va, store.labels)
    assert state is None


def test_no_or_unreadable_last_checkpoint_starts_fresh(setup, tmp_path):
    params, store, tr, va = setup
    assert find_resumable(tmp_path / "last.pt", tmp_path / "best.pt", params, tr, va, store.labels) == \
        (None, "starting fresh (no last checkpoint)")
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    state, note = find_resumable(tmp_path / "last.pt", tmp_path / "best.pt", params, tr, va, store.labels)
    assert state is None and "is unreadable" in note
