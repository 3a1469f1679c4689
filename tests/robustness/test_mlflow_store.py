"""A first run in a temporary copy (dvc exp run --temp), starting from no store at all, keeps its
artifacts in the repository's store, and so does every later queued run."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import run

pytestmark = pytest.mark.slow


def _runs(root: Path) -> list[dict]:
    code = (
        "import json, mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
        "runs = mlflow.search_runs(search_all_experiments=True, output_format='list'); "
        "print(json.dumps([{'exp': r.data.tags.get('dvc_exp_name'), "
        "'uri': r.info.artifact_uri, 'artifacts': [a.path for a in mlflow.artifacts.list_artifacts(run_id=r.info.run_id)]} "
        "for r in runs]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    runs = {r["exp"]: r for r in _runs(root)}
    for name in ("first-temp", "then-queued"):
        uri = runs[name]["uri"].removeprefix("file://")
        assert Path(uri).resolve().is_relative_to(store), (name, uri)
        assert {"checkpoints", "evaluation"} <= set(runs[name]["artifacts"])
        assert (Path(uri) / "checkpoints" / "best.pt").is_file()
    assert not list((root / ".dvc" / "tmp").rglob("mlruns"))
