"""MLflow tracking: where the store is, run status, reopening runs, nested fold runs."""

from pathlib import Path

import mlflow
import pytest

from audioclf.tracking import (
    ArtifactsElsewhere,
    Runs,
    Store,
    parent_run_id,
    resolve_store,
    start_run,
)


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A repository root of its own, no user tracking URI, and nothing left behind for other tests."""
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield root
    mlflow.end_run()


@pytest.fixture
def store(root) -> Store:
    return resolve_store(root, environ={})


def test_a_run_that_raises_ends_failed_and_one_that_does_not_finished(store):
    with start_run(store, "toy", run_name="ok") as run:
        mlflow.log_metric("m", 1.0)
    with pytest.raises(RuntimeError), start_run(store, "toy", run_name="broken") as failed:
        raise RuntimeError("boom")
    assert store.client().get_run(run.info.run_id).info.status == "FINISHED"
    assert store.client().get_run(failed.info.run_id).info.status == "FAILED"


def test_reopening_a_run_adds_to_it_and_an_unknown_id_starts_a_new_one(store):
    tags = {"fold": "0"}
    with start_run(store, "toy", run_name="train", params={"train.lr": 0.01}, tags=tags) as run:
        mlflow.log_metric("val_macro_f1", 0.5)
    with start_run(store, "toy", run_name="evaluate", run_id=run.info.run_id):
        mlflow.log_metric("test_macro_f1", 0.4)
    data = store.client().get_run(run.info.run_id).data
    assert data.metrics == {"val_macro_f1": 0.5, "test_macro_f1": 0.4}
    assert data.params == {"train.lr": "0.01"} and data.tags["fold"] == "0"
    assert data.tags["dvc_exp_name"] == "workspace"
    # the store was reset since training
    with start_run(store, "toy", run_name="again", run_id="0" * 32) as fresh:
        pass
    assert fresh.info.run_id != run.info.run_id


def test_the_default_store_and_its_artifacts_live_at_the_root_whatever_the_working_dir(
    root, tmp_path, monkeypatch
):
    """Queued and --temp experiments run in a copy that DVC deletes: their runs must land in the
    real repo, which the entry point resolves (DVC_ROOT) and passes down."""
    copy = tmp_path / "copy"
    copy.mkdir()
    monkeypatch.chdir(copy)
    store = resolve_store(root, environ={})
    assert store.uri == f"sqlite:///{root.resolve() / 'mlflow.db'}"
    with start_run(store, "toy", run_name="queued") as run:
        mlflow.log_text("x", "plots/a.txt")
    assert (root / "mlflow.db").is_file() and not (copy / "mlflow.db").exists()
    experiment = store.client().get_experiment(run.info.experiment_id)
    location = Path(experiment.artifact_location.removeprefix("file://"))
    assert location == root.resolve() / "mlartifacts"
    assert (root / "mlartifacts").is_dir() and not (copy / "mlruns").exists()


def test_a_user_tracking_uri_is_used_and_the_server_chooses_artifacts(root, tmp_path):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    store = resolve_store(root, environ={"MLFLOW_TRACKING_URI": uri})
    assert store == Store(uri)
    runs = Runs(store, "toy", "cnn-ce")
    with runs.open() as parent, runs.open_fold(0) as child:
        pass
    assert parent_run_id(store, child.info.run_id) == parent.info.run_id
    assert store.client().get_run(child.info.run_id).info.status == "FINISHED"
    assert (tmp_path / "elsewhere.db").is_file() and not (root / "mlflow.db").exists()


def test_fold_runs_are_children_of_the_training_run(store):
    runs = Runs(store, "toy", "cnn-ce", params={"model": "cnn"}, tags={"split_strategy": "kfold"})
    with runs.open() as parent:
        with runs.open_fold(0) as child:
            pass
    assert parent_run_id(store, child.info.run_id) == parent.info.run_id
    tags = store.client().get_run(child.info.run_id).data.tags
    assert tags["fold"] == "0" and tags["split_strategy"] == "kfold"
    assert tags["mlflow.runName"] == "cnn-ce-fold0"
    assert parent_run_id(store, parent.info.run_id) is None


def test_an_experiment_whose_artifacts_live_elsewhere_is_reported_with_the_fix(store, tmp_path):
    """A first run in a --temp copy used to fix the experiment's artifact root inside that copy:
    the user is told, and nothing is renamed behind their back."""
    client = store.client()
    dead = (tmp_path / "exps" / "tmp123" / "mlruns").as_uri()
    old = client.create_experiment("audioclf-toy", artifact_location=dead)
    with pytest.raises(ArtifactsElsewhere) as err:
        with start_run(store, "toy", run_name="after"):
            pass
    assert f"mlflow experiments rename --experiment-id {old}" in str(err.value)
    assert dead in str(err.value)
    assert client.get_experiment(old).name == "audioclf-toy"
    assert [e.name for e in client.search_experiments()] == ["audioclf-toy", "Default"]
