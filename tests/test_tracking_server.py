"""Tracking to a shared MLflow server: a real ``mlflow server`` on 127.0.0.1 (sqlite backend,
a local ``--artifacts-destination``); every run and artifact goes through it and nothing
tracking-related is written in the repository, by the library and by the train and evaluate
stages."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from tests.conftest import run_stages, workspace_copy

from audioclf.tracking import Runs, resolve_store

TRACKING_FILES = ("mlflow.db", "mlruns", "mlartifacts")


@dataclass(frozen=True)
class Server:
    uri: str
    artifacts: Path  # the server's --artifacts-destination


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on a free port of 127.0.0.1, up within 3 minutes, always stopped."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}"]
    cmd += ["--artifacts-destination", str(root / "artifacts")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = root / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"mlflow server exited:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, (
                f"mlflow server not up in 180 s:\n{log.read_text()[-3000:]}"
            )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield Server(f"http://127.0.0.1:{port}", root / "artifacts")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tracking_files(root: Path) -> list[Path]:
    return [p for name in TRACKING_FILES for p in root.rglob(name)]


@pytest.mark.slow  # the server takes ~30-60 s to start on 2 cores
def test_runs_and_artifacts_go_through_the_server_and_nothing_is_written_here(
    server, tmp_path, monkeypatch
):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    store = resolve_store(repo, environ={"MLFLOW_TRACKING_URI": server.uri})
    tags = {"split_strategy": "kfold"}
    runs = Runs(store, "served", "cnn-ce", params={"train.lr": 0.001}, tags=tags)
    try:
        with runs.open() as parent, runs.open_fold(0) as child:
            mlflow.log_metric("val_macro_f1", 0.5, step=1)
            mlflow.log_artifact(str(checkpoint), "checkpoints")
    finally:
        mlflow.end_run()
    client = MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment(client.get_run(child.info.run_id).info.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's proxy
    got = client.get_run(child.info.run_id)
    assert (
        got.info.status == "FINISHED" and got.data.tags["mlflow.parentRunId"] == parent.info.run_id
    )
    assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["checkpoints"]
    stored = server.artifacts / experiment.experiment_id / child.info.run_id / "artifacts"
    assert (stored / "checkpoints" / "best.pt").read_bytes() == b"weights"
    assert list(repo.iterdir()) == []


@pytest.mark.slow
def test_the_stages_log_to_the_server_alone(server, pipeline, tmp_path):
    """The train and evaluate stages with ``MLFLOW_TRACKING_URI`` set: the run, its checkpoint,
    plots and evaluation are on the server, and nothing tracking-related in the workspace."""
    root = workspace_copy(pipeline, tmp_path / "ws")
    try:
        run_stages(root, ["train", "evaluate"], tracking_uri=server.uri)
    finally:
        mlflow.end_run()
    client = MlflowClient(tracking_uri=server.uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "audioclf-synthetic"]
    (r,) = client.search_runs([experiment.experiment_id])
    assert r.info.status == "FINISHED" and "test_macro_f1" in r.data.metrics
    stored = server.artifacts / experiment.experiment_id / r.info.run_id / "artifacts"
    assert (stored / "checkpoints" / "best.pt").is_file()
    assert list((stored / "plots").glob("*.png")) and list((stored / "evaluation").iterdir())
    assert _tracking_files(root) == [], "a stage wrote tracking files in the repository"
