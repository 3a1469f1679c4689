"""A killed training resumes from last.pt to exactly the uninterrupted result (CPU, same seed),
and starts fresh, saying why, when last.pt does not belong to this run."""

import dataclasses
import shutil

import pytest
import torch
from tests.conftest import repo_params, shrink

from audioclf.config import parse_params
from audioclf.config.training import AugmentConfig, MixupConfig, SpecAugmentConfig
from audioclf.features.table import FeatureTable
from audioclf.training.loop import train
from audioclf.training.resume import find_resumable, plan_folds, run_key

pytestmark = pytest.mark.usefixtures("one_thread")


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
    # dropout, MixUp and SpecAugment all draw random numbers: resuming must restore every random
    # state; and the averaged weights (train.ema), which are validated and saved
    params = dataclasses.replace(
        params,
        train=dataclasses.replace(params.train, epochs=3, patience=3, warmup_epochs=1.0, ema=0.9),
        augment=AugmentConfig(
            specaugment=SpecAugmentConfig(p=0.5, freq_width=4, time_width=4),
            mixup=MixupConfig(p=0.5),
        ),
    )
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    return params, FeatureTable(cache), paths["train"], paths["val"]


@pytest.fixture(scope="module")
def runs(setup, tmp_path_factory):
    """An uninterrupted run, and one killed in its last epoch, 3 (last.pt then holds epoch 2)."""
    params, store, tr, va = setup
    full, killed = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("killed")
    result = train(
        params.train_spec(),
        store,
        tr,
        va,
        full / "best.pt",
        lambda m, s: None,
        last=full / "last.pt",
    )
    with pytest.raises(Killed):
        train(
            params.train_spec(),
            store,
            tr,
            va,
            killed / "best.pt",
            kill_at(3),
            last=killed / "last.pt",
        )
    return result, full, killed


def test_resumed_run_equals_the_uninterrupted_one(setup, runs, tmp_path):
    params, store, tr, va = setup
    full_result, full, killed = runs
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    state, note = find_resumable(
        run / "last.pt",
        run / "best.pt",
        run_key(params.train_spec(), tr, va, store.labels, store.frontend_key),
    )
    assert state is not None and note.startswith("resuming after epoch 2")
    result = train(
        params.train_spec(),
        store,
        tr,
        va,
        run / "best.pt",
        lambda m, s: None,
        last=run / "last.pt",
        resume=state,
    )
    assert result["resumed_from_epoch"] == 2 and full_result["resumed_from_epoch"] == 0
    assert result["history"] == full_result["history"]
    assert result["best_epoch"] == full_result["best_epoch"]
    a, b = (torch.load(d / "best.pt", weights_only=False)["state_dict"] for d in (full, run))
    assert all(torch.equal(a[k], b[k]) for k in a)
    state, note = find_resumable(
        run / "last.pt",
        run / "best.pt",
        run_key(params.train_spec(), tr, va, store.labels, store.frontend_key),
    )
    assert state["finished"] and "finished" in note
    assert plan_folds([state]) == [None]  # a rerun of a finished training retrains


def test_plan_folds_continues_only_an_interrupted_run():
    done, unfinished = {"finished": True}, {"finished": False}
    assert plan_folds([None, None]) == [None, None]  # first run
    assert plan_folds([done, done]) == [None, None]  # forced rerun: retrain all
    assert plan_folds([done, unfinished, None]) == [done, unfinished, None]  # killed in fold 1
    assert plan_folds([done, None]) == [done, None]  # killed between folds


def test_other_params_start_fresh(setup, runs):
    params, store, tr, va = setup
    _, _, killed = runs
    other = dataclasses.replace(params, seed=7)
    state, note = find_resumable(
        killed / "last.pt",
        killed / "best.pt",
        run_key(other.train_spec(), tr, va, store.labels, store.frontend_key),
    )
    assert state is None and "other params, splits, classes, device or precision" in note
    state, note = find_resumable(
        killed / "last.pt",
        killed / "best.pt",
        run_key(params.train_spec(), tr[1:], va, store.labels, store.frontend_key),
    )
    assert state is None


def test_missing_or_foreign_best_checkpoint_starts_fresh(setup, runs, tmp_path):
    params, store, tr, va = setup
    _, full, killed = runs
    state, note = find_resumable(
        killed / "last.pt",
        tmp_path / "best.pt",
        run_key(params.train_spec(), tr, va, store.labels, store.frontend_key),
    )
    assert state is None and "missing or from another training" in note
    state, _ = find_resumable(
        killed / "last.pt",
        full / "best.pt",
        run_key(params.train_spec(), tr, va, store.labels, store.frontend_key),
    )
    assert state is None


def test_no_or_unreadable_last_checkpoint_starts_fresh(setup, tmp_path):
    params, store, tr, va = setup
    assert find_resumable(
        tmp_path / "last.pt",
        tmp_path / "best.pt",
        run_key(params.train_spec(), tr, va, store.labels, store.frontend_key),
    ) == (None, "starting fresh (no last checkpoint)")
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    state, note = find_resumable(
        tmp_path / "last.pt",
        tmp_path / "best.pt",
        run_key(params.train_spec(), tr, va, store.labels, store.frontend_key),
    )
    assert state is None and "is unreadable" in note


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow sqlite store with its tables made, for the stage tests to copy: creating the
    tables runs every migration of MLflow's schema, once per module instead of once per test."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


def _stage(tmp_path, monkeypatch, tiny_cache, empty_store, n_folds):
    """The train stage's main and its arguments, run in ``tmp_path`` (2 epochs) on ``n_folds``
    copies of the tiny split, logging to a store of its own."""
    import yaml
    from tests.conftest import stage_main

    from audioclf.data.manifest import write_manifest

    cache, splits = tiny_cache
    for n in range(n_folds):
        for name in ("train", "val"):
            write_manifest(splits[name], tmp_path / "split" / f"fold_{n}" / f"{name}.csv")
    raw = shrink(repo_params())
    raw["train"].update(epochs=2, patience=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "leakage.json").write_text('{"checks": {}}')  # a clean audit
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    argv = [
        "--params",
        "params.yaml",
        "--features",
        str(cache),
        "--split",
        "split",
        "--models",
        "models",
        "--resume",
        "resume",
        "--curves",
        "curves",
        "--summary",
        "train.json",
        "--leakage",
        "leakage.json",
    ]
    return stage_main("train"), argv


def _kill_at(monkeypatch, epoch, call):
    """Make the stage's training raise Killed the ``call``-th time it is about to log ``epoch``
    (before that epoch's metrics reach MLflow and its resumable state is written)."""
    from audioclf.training import stage

    train_fold, seen = stage.train, []

    def killed(*args, log_metrics, **kwargs):
        def log(metrics, step):
            if step == epoch:
                seen.append(step)
                if len(seen) == call:
                    raise Killed
            log_metrics(metrics, step)

        return train_fold(*args, log_metrics=log, **kwargs)

    monkeypatch.setattr(stage, "train", killed)


def test_stage_rerun_resumes_and_continues_the_mlflow_run(
    tiny_cache, empty_store, tmp_path, monkeypatch
):
    import mlflow

    main, argv = _stage(tmp_path, monkeypatch, tiny_cache, empty_store, n_folds=1)
    _kill_at(monkeypatch, epoch=2, call=1)
    with pytest.raises(Killed):
        main(argv)
    main(argv)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] == "1"
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "val/macro_f1")
    assert sorted(m.step for m in history) == [1, 2]


def test_killed_cross_validation_reuses_finished_folds(
    tiny_cache, empty_store, tmp_path, monkeypatch
):
    import mlflow

    main, argv = _stage(tmp_path, monkeypatch, tiny_cache, empty_store, n_folds=2)
    _kill_at(monkeypatch, epoch=2, call=2)  # epoch 2 of fold 1
    with pytest.raises(Killed):
        main(argv)
    summary = main(argv)
    assert set(summary["folds"]) == {"0", "1"}
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    children = {r.data.tags["fold"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    # fold 0 finished before the kill: not retrained
    assert children["0"].data.tags["resumed_from_epoch"] == "2"
    assert children["1"].data.tags["resumed_from_epoch"] == "1"
    for fold, run in children.items():
        history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "val/macro_f1")
        assert sorted(m.step for m in history) == [1, 2], fold
