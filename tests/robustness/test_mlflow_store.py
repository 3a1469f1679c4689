"""A first run in a temporary copy (dvc exp run --temp), starting from no store at all, keeps its
artifacts in the repository's store, and so does every later queued run."""

import time
from pathlib import Path

import pytest
from tests.conftest import mlflow_runs, run

pytestmark = pytest.mark.slow


def test_temp_and_queued_runs_keep_their_artifacts_in_the_repository(project):
    root, env = project
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()
    run(["dvc", "exp", "run", "--temp", "-n", "first-temp", "-S", "train.epochs=1"], root, env)
    run(["dvc", "exp", "run", "--queue", "-n", "then-queued", "-S", "train.epochs=2"], root, env)
    run(["dvc", "queue", "start"], root, env)
    deadline = time.time() + 300
    while "then-queued" not in run(["dvc", "exp", "list", "--name-only"], root, env):
        assert time.time() < deadline, "the queued experiment did not finish in 5 minutes"
        time.sleep(3)
    store = (root / "mlartifacts").resolve()
    runs = {r["tags"].get("dvc_exp_name"): r for r in mlflow_runs(root)}
    for name in ("first-temp", "then-queued"):
        uri = runs[name]["artifact_uri"].removeprefix("file://")
        assert Path(uri).resolve().is_relative_to(store), (name, uri)
        assert {"checkpoints", "evaluation"} <= set(runs[name]["artifacts"])
        assert (Path(uri) / "checkpoints" / "best.pt").is_file()
    assert not list((root / ".dvc" / "tmp").rglob("mlruns"))
