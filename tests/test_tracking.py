"""MLflow tracking: where the store is, run status, reopening runs, nested fold runs."""

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from audioclf.tracking import Runs, parent_run_id, start_run, tracking_uri, use_store


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A repository root of its own, no user tracking URI, and nothing left behind for other tests."""
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    yield root
    mlflow.end_run()


def _client() -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri())


def test_a_run_that_raises_ends_failed_and_one_that_does_not_finished(store):
    with start_run("toy", run_name="ok") as run:
        mlflow.log_metric("m", 1.0)
    with pytest.raises(RuntimeError), start_run("toy", run_name="broken") as failed:
        raise RuntimeError("boom")
    assert _client().get_run(run.info.run_id).info.status == "FINISHED"
    assert _client().get_run(failed.info.run_id).info.status == "FAILED"


def test_reopening_a_run_adds_to_it_and_an_unknown_id_starts_a_new_one(store):
    with start_run("toy", run_name="train", params={"train.lr": 0.01}, tags={"fold": "0"}) as run:
        mlflow.log_metric("val_macro_f1", 0.5)
    with start_run("toy", run_name="evaluate", run_id=run.info.run_id):
        mlflow.log_metric("test_macro_f1", 0.4)
    data = _client().get_run(run.info.run_id).data
    assert data.metrics == {"val_macro_f1": 0.5, "test_macro_f1": 0.4}
    assert (
        data.params == {"train.lr": "0.01"}
        and data.tags["fold"] == "0"
        and data.tags["dvc_exp_name"] == "workspace"
    )
    with start_run(
        "toy", run_name="again", run_id="0" * 32
    ) as fresh:  # the store was reset since training
        pass
    assert fresh.info.run_id != run.info.run_id


def test_the_default_store_and_its_artifacts_live_at_dvc_root_whatever_the_working_dir(
    store, tmp_path, monkeypatch
):
    """Queued and --temp experiments run in a copy that DVC deletes: their runs must land in the real repo."""
    use_store()  # MLflow 3 exports this as MLFLOW_TRACKING_URI
    copy = tmp_path / "copy"
    copy.mkdir()
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(store))
    with start_run("toy", run_name="queued") as run:
        mlflow.log_text("x", "plots/a.txt")
    assert tracking_uri() == f"sqlite:///{store.resolve() / 'mlflow.db'}"
    assert (store / "mlflow.db").is_file() and not (copy / "mlflow.db").exists()
    experiment = _client().get_experiment(run.info.experiment_id)
    assert (
        Path(experiment.artifact_location.removeprefix("file://"))
        == store.resolve() / "mlartifacts"
    )
    assert (store / "mlartifacts").is_dir() and not (copy / "mlruns").exists()


def test_a_user_tracking_uri_is_used_and_the_server_chooses_artifacts(store, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking_uri() == uri
    with start_run("toy", run_name="r"):
        pass
    assert (tmp_path / "elsewhere.db").is_file() and not (store / "mlflow.db").exists()


def test_a_user_tracking_uri_holds_for_every_run_of_the_process(store, tmp_path, monkeypatch):
    """MLflow exports the URI it is given as MLFLOW_TRACKING_URI: the user's must not then be taken
    for one this module set, which would send the fold runs and evaluation to the repo's store."""
    uri = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    runs = Runs("toy", "cnn-ce")
    with runs.open() as parent, runs.open_fold(0) as child:
        pass
    assert parent_run_id(child.info.run_id) == parent.info.run_id
    assert MlflowClient(tracking_uri=uri).get_run(child.info.run_id).info.status == "FINISHED"
    assert tracking_uri() == uri and not (store / "mlflow.db").exists()


def test_fold_runs_are_children_of_the_training_run(store):
    runs = Runs("toy", "cnn-ce", params={"model": "cnn"}, tags={"split_strategy": "kfold"})
    with runs.open() as parent:
        with runs.open_fold(0) as child:
            pass
    assert parent_run_id(child.info.run_id) == parent.info.run_id
    tags = _client().get_run(child.info.run_id).data.tags
    assert (
        tags["fold"] == "0"
        and tags["split_strategy"] == "kfold"
        and tags["mlflow.runName"] == "cnn-ce-fold0"
    )
    assert parent_run_id(parent.info.run_id) is None


def test_an_experiment_whose_artifacts_went_to_a_deleted_copy_is_set_aside(store, tmp_path):
    """A first run in a --temp copy used to fix the experiment's artifact root inside that copy."""
    client = MlflowClient(tracking_uri=tracking_uri())
    dead = (tmp_path / "exps" / "tmp123" / "mlruns").as_uri()
    old = client.create_experiment("audioclf-toy", artifact_location=dead)
    with start_run("toy", run_name="after") as run:
        mlflow.log_text("x", "plots/a.txt")
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "audioclf-toy" and experiment.experiment_id != old
    assert (
        Path(experiment.artifact_location.removeprefix("file://"))
        == store.resolve() / "mlartifacts"
    )
    assert client.get_experiment(old).name == f"audioclf-toy-artifacts-elsewhere-{old}"
