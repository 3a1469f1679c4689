"""``audioclf tune``: the search space checked with the params, trials scored on the validation
folds only (the test files poisoned), every trial a child run in MLflow, pruning, two workers
sharing one SQLite study, and a killed study resumed. ``--apply`` runs through DVC in
tests/test_pipeline_e2e.py."""

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import yaml
from tests.conftest import REPO, mlflow_runs, repo_params, workspace_copy

from audioclf.cli import run as run_main
from audioclf.config.params import parse_params
from audioclf.config.schema import ParamsError
from audioclf.config.tune import load_tune, parse_dimension
from audioclf.data.manifest import read_manifest
from audioclf.experiments import tune
from audioclf.features.table import DATA_FILE, FeatureTable

SPACE = {"train.lr": {"low": 0.001, "high": 0.01, "log": True}, "train.batch_size": [8, 16]}
CHANCE = 1 / 6  # the shrunk synthetic data: 6 classes


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)


def write_tune(root, **settings):
    """tune.yaml in ``root``: the repository's, with ``settings``."""
    raw = {**yaml.safe_load((REPO / "tune.yaml").read_text()), **settings}
    (root / "tune.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root / "tune.yaml"


@pytest.mark.parametrize(
    "space, message",
    [
        ({"train.lrr": [0.1, 0.2]}, "'tune.space.train.lrr' names no params key"),
        ({"trian.lr": [0.1, 0.2]}, "is not a key the train stage reads"),
        ({"features.n_mels": [32, 64]}, "is not a key the train stage reads"),
        ({"train.lr": {"low": -1.0, "high": 0.1}}, "allows -1.0: params: 'train.lr'"),
        ({"train.batch_size": [16]}, "at least two values"),
        ({"loss": ["ce", "hinge"]}, "allows 'hinge': params: 'loss'"),
        ({"train.lr": {"low": 0.1, "high": 0.01}}, "low must be below high"),
        ({"train.lr": {"low": 0.0, "high": 0.1, "log": True}}, "must be > 0 on a log scale"),
        ({"train.lr": {"low": 0.001, "hi": 0.1}}, "'tune.space.train.lr.hi' is not low, high"),
    ],
)
def test_a_bad_search_space_fails_before_any_trial(space, message, tmp_path):
    path = write_tune(tmp_path, space=space)
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_tune(path, parse_params(repo_params()))


def test_the_shipped_space_suits_the_default_model_and_names_what_another_refuses(tmp_path):
    raw = repo_params()
    assert load_tune(REPO / "tune.yaml", parse_params(raw)).trials >= 20
    # SpecAugment acts on log-mel: with ComParE functionals the shipped space is refused
    svm = parse_params({**raw, "model": "svm", "features": {**raw["features"], "kind": "compare"}})
    with pytest.raises(ParamsError, match="tune.yaml: 'tune.space.augment.specaugment.p' allows"):
        load_tune(REPO / "tune.yaml", svm)
    with pytest.raises(ParamsError, match="'tune.trials' must be >= 1"):
        load_tune(write_tune(tmp_path, trials=0), parse_params(raw))


def test_search_space_kinds():
    assert parse_dimension("loss", ["ce", "focal"]).choices == ("ce", "focal")
    lr = parse_dimension("train.lr", {"low": "1e-4", "high": 1.0e-2, "log": True})
    assert (lr.low, lr.integer, lr.log) == (1e-4, False, True)  # YAML 1.1 reads 1e-4 as a string
    hidden = parse_dimension("model_params.cnn.hidden", {"low": 16, "high": 128, "step": 16})
    assert hidden.integer and hidden.values() == [16, 128]


def run_tune(root, *args):
    with contextlib.chdir(root):
        return run_main(tune.main, list(args))


def study_in(root, name: str, db: str = "data/tune/optuna.db") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / db}")


def test_trials_learn_on_validation_only_and_each_is_a_child_run(pipeline, tmp_path):
    root = workspace_copy(pipeline, tmp_path / "clean")
    write_tune(root, space=SPACE)
    out = run_tune(root, "--trials", "3", "--study", "s")
    study = study_in(root, "s")
    values = [t.value for t in study.trials]
    assert out["ran"] == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert max(values) > 2 * CHANCE  # it learned
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3

    runs = mlflow_runs(root)
    (parent,) = [r for r in runs if r["name"] == "tune-s"]
    children = [r for r in runs if r["tags"].get("optuna_study") == "s" and r is not parent]
    assert len(children) == 3 and parent["status"] == "FINISHED"
    by_trial = {int(c["tags"]["optuna_trial"]): c for c in children}
    for t in study.trials:
        child = by_trial[t.number]
        assert child["name"] == f"trial-{t.number}" and child["tags"]["trial_state"] == "COMPLETE"
        assert child["metrics"]["tune_val_macro_f1"] == pytest.approx(t.value)
        assert "val/macro_f1" in child["metrics"] and "train/loss" in child["metrics"]
        assert child["tags"]["mlflow.parentRunId"] == study.user_attrs["mlflow_run_id"]
    assert parent["metrics"]["best_value"] == pytest.approx(study.best_value)
    assert parent["tags"]["best_trial"] == str(study.best_trial.number)
    assert parent["metrics"]["trials_complete"] == 3
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (run_id,) = [study.user_attrs["mlflow_run_id"]]
    names = {a.path for a in client.list_artifacts(run_id, "tune")}
    assert {f"tune/{n}" for n in ("trials.csv", "history.png", "importance.png")} <= names
    assert {"tune/importance.json", "tune/summary.json"} <= names

    # the same search with every test file's features poisoned (NaN) and the test lists gone
    poisoned = workspace_copy(pipeline, tmp_path / "poisoned")
    write_tune(poisoned, space=SPACE)
    test_paths = [
        e.path for f in sorted((poisoned / "data/test").glob("*.csv")) for e in read_manifest(f)
    ]
    table = FeatureTable(poisoned / "data/features")
    rows = table.indices(test_paths)
    assert len(rows) > 10
    data = np.memmap(poisoned / "data/features" / DATA_FILE, dtype=np.float32, mode="r+")
    data = data.reshape(table.data.shape)
    data[rows] = np.nan
    data.flush()
    del data
    for f in (poisoned / "data/test").glob("*.csv"):
        f.unlink()
    run_tune(poisoned, "--trials", "3", "--study", "s")
    assert [t.value for t in study_in(poisoned, "s").trials] == values

    # the control: with the test files among a fold's training files, every trial fails
    train_csv = poisoned / "data/split/fold_0/train.csv"
    test_rows = (pipeline / "data/test/fold_0.csv").read_text().splitlines()[1:]
    train_csv.write_text(train_csv.read_text() + "\n".join(test_rows) + "\n")
    with pytest.raises(SystemExit):
        run_tune(poisoned, "--trials", "2", "--study", "control")
    assert {t.state.name for t in study_in(poisoned, "control").trials} == {"FAIL"}


def test_a_hopeless_trial_is_pruned_and_its_run_says_so(pipeline, tmp_path):
    space = {"train.lr": [0.003, 1.0e-7]}
    root = workspace_copy(pipeline, tmp_path / "prune")
    write_tune(root, space=space, pruner="median")
    study_name = "p"
    with contextlib.chdir(root):
        params = parse_params(yaml.safe_load((root / "params.yaml").read_text())).located(root)
        from audioclf.data.split import read_folds
        from audioclf.io import read_json
        from audioclf.tracking import resolve_store

        search = tune.Search(
            params,
            load_tune(root / "tune.yaml", params),
            FeatureTable(root / "data/features"),
            read_folds(root / "data/split"),
            resolve_store(root),
            read_json(root / "reports/leakage.json"),
            root,
        )
        study, parent = search.open(study_name, tune.default_storage(root))
        for lr in [0.003] * 5 + [1.0e-7]:  # five trials to take the median of, then a hopeless one
            study.enqueue_trial({"train.lr": lr}, skip_if_exists=False)
        search.optimize(study, parent, 6, None)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 5 + ["PRUNED"]
    pruned = study.trials[-1]
    assert max(pruned.intermediate_values) < 3  # stopped before the last of its 3 epochs
    (run,) = [r for r in mlflow_runs(root) if r["tags"].get("optuna_trial") == "5"]
    assert run["tags"]["trial_state"] == "PRUNED" and run["status"] == "FINISHED"
    assert run["tags"]["mlflow.note.content"].startswith("pruned at epoch")


def worker(root, *args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.Popen(
        [sys.executable, "-m", "audioclf", "tune", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _open_when_all_are_ready(url, ready) -> None:
    ready.wait()
    tune.rdb_storage(url)


@pytest.mark.parametrize("attempt", range(3))
def test_workers_that_open_one_fresh_sqlite_study_at_once_all_open_it(tmp_path, attempt):
    # Optuna creates its tables as it opens a database: unguarded, about one opener in six
    # failed here ("table studies already exists", "UNIQUE constraint failed: alembic_version")
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(6)
    workers = [ctx.Process(target=_open_when_all_are_ready, args=(url, ready)) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0] * 6
    assert optuna.get_all_study_names(url) == []


def test_two_workers_share_one_sqlite_study(pipeline, tmp_path):
    root = workspace_copy(pipeline, tmp_path / "two")
    write_tune(root, space=SPACE)
    args = ["--trials", "6", "--study", "shared", "--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    workers = [worker(root, *args) for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'study.db'}")
    states = [t.state.name for t in study.trials]
    # the budget counts finished trials; a worker may finish the one it started as the other ends
    assert set(states) <= {"COMPLETE", "PRUNED"} and 6 <= len(states) <= 7, states
    assert all("tune: trial" in text for text in logs), logs  # both workers ran trials
    runs = mlflow_runs(root)
    parents = [r for r in runs if r["name"] == "tune-shared"]
    children = [r for r in runs if r["tags"].get("optuna_study") == "shared" and r not in parents]
    assert len(parents) == 1  # one study, one run
    assert sorted(int(c["tags"]["optuna_trial"]) for c in children) == list(range(len(states)))
    assert {c["tags"]["mlflow.parentRunId"] for c in children} == {
        study.user_attrs["mlflow_run_id"]
    }


def test_a_killed_study_resumes_and_reruns_the_trial_it_lost(pipeline, tmp_path):
    root = workspace_copy(pipeline, tmp_path / "resume")
    write_tune(root, space=SPACE, heartbeat_s=1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["--trials", "2", "--study", "r", "--storage", url]
    first = worker(root, *args)
    deadline = time.time() + 300
    while True:  # kill the worker once its first trial has scored an epoch
        with contextlib.suppress(KeyError, ValueError):
            trials = optuna.load_study(study_name="r", storage=url).trials
            if trials and trials[0].intermediate_values:
                break
        assert first.poll() is None and time.time() < deadline, first.communicate()[0]
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(3)  # past the grace period (two heartbeats)
    run_tune(root, *args)
    trials = optuna.load_study(study_name="r", storage=url).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    retry = [t for t in trials[1:] if t.user_attrs["first_trial"] == 0]
    assert len(retry) == 1 and retry[0].params == trials[0].params
    runs = {r["tags"]["optuna_trial"]: r for r in mlflow_runs(root) if "optuna_trial" in r["tags"]}
    assert runs["0"]["status"] == "KILLED"
    assert runs[str(retry[0].number)]["tags"]["optuna_retry_of"] == "0"
