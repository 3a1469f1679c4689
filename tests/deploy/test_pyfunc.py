"""The MLflow Model: registered with its metrics, and its answer -- loaded in-process, or served over
HTTP on 127.0.0.1 -- is ``audioclf predict``'s on the same audio."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import soundfile as sf
from tests.deploy.conftest import predict_rows, same_answers

from audioclf.deploy.model import load_model
from audioclf.deploy.pyfunc import SIGNATURE, log_model, register
from audioclf.tracking import resolve_store, start_run

REPO = Path(__file__).resolve().parents[2]
NAME = "audioclf-tiny"


@pytest.fixture(scope="module")
def registry(trained, tmp_path_factory):
    """The trained model logged and registered (version 1) in a store of its own: (folder, run id)."""
    checkpoint, _, _ = trained
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with start_run(resolve_store(root, environ={}), "tiny", run_name="cnn-ce") as run:
            info = log_model(checkpoint)
            mlflow.log_metrics({"test_macro_f1": 0.5}, model_id=info.model_id)
            metrics = {"macro_f1": 0.5, "accuracy": 0.75}
            register(info.model_uri, "tiny", metrics, dvc_exp_name="tiny-exp")
        yield root, run.info.run_id


def test_the_registered_version_carries_metrics_and_the_experiment(registry):
    root, run_id = registry
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    version = client.get_model_version(NAME, "1")
    assert version.run_id == run_id
    assert (
        version.tags["test_macro_f1"] == "0.500000" and version.tags["dvc_exp_name"] == "tiny-exp"
    )
    # the version's source is the logged model, whose page (and the version's) show its metrics
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert model.source_run_id == run_id
    assert {m.key for m in model.metrics} >= {"test_macro_f1"}


def test_the_pyfunc_answers_as_audioclf_predict_does(registry, trained, tmp_path):
    root, run_id = registry
    checkpoint, data_root, splits = trained
    files = [str(data_root / e.path) for e in splits["test"][:3]]
    rows = predict_rows(files, checkpoint, tmp_path / "out")
    store = f"sqlite:///{root / 'mlflow.db'}"
    local = mlflow.artifacts.download_artifacts(
        f"models:/{NAME}/1",
        dst_path=str(tmp_path / "model"),
        tracking_uri=store,
        registry_uri=store,
    )
    model = mlflow.pyfunc.load_model(local)
    assert model.metadata.signature == SIGNATURE
    import pandas as pd

    b64 = [{"audio_base64": base64.b64encode(Path(f).read_bytes()).decode()} for f in files]
    answer = model.predict(pd.DataFrame(b64), params={"top_k": 2, "min_score": 0.0}).to_dict(
        orient="records"
    )
    same_answers(rows, files, answer)
    samples = [
        {"samples": sf.read(f)[0].tolist(), "sample_rate": sf.info(f).samplerate} for f in files
    ]
    answer = model.predict(pd.DataFrame(samples), params={"top_k": 2, "min_score": 0.0}).to_dict(
        orient="records"
    )
    same_answers(rows, files, answer)
    bad = model.predict(pd.DataFrame([{"audio_base64": "bm90IGF1ZGlv"}])).to_dict(orient="records")
    assert len(bad) == 1 and bad[0]["error"].startswith("audio_base64: unreadable")
    # predict takes the same model by its URIs, in the store it is given
    by_name = load_model(f"models:/{NAME}/1", tracking_uri=store)
    assert by_name.labels == load_model(f"runs:/{run_id}/model", tracking_uri=store).labels


def test_the_device_is_chosen_at_load_time_and_a_wrong_one_refused(registry, tmp_path, monkeypatch):
    import pandas as pd
    import torch

    from audioclf.deploy.pyfunc import serving_device

    root, _ = registry
    store = f"sqlite:///{root / 'mlflow.db'}"
    local = mlflow.artifacts.download_artifacts(
        f"models:/{NAME}/1", dst_path=str(tmp_path), tracking_uri=store, registry_uri=store
    )
    model = mlflow.pyfunc.load_model(local, model_config={"device": "cpu"})
    inner = model.unwrap_python_model()
    assert inner.device == torch.device("cpu") and "cpu" in inner.model._copies
    record = pd.DataFrame([{"samples": [0.1] * 8000, "sample_rate": 8000}])
    rows = model.predict(record, params={"min_score": 0.0})
    assert len(rows) >= 1 and not rows["error"].fillna("").any()
    with pytest.raises(ValueError, match=r"model_config\.device' is 'gpu'; allowed values: auto"):
        mlflow.pyfunc.load_model(local, model_config={"device": "gpu"})
    with monkeypatch.context() as mp:  # how mlflow models serve is told
        mp.setenv("MLFLOW_PYFUNC_INFERENCE_CONFIG", '{"device": "tpu"}')
        with pytest.raises(ValueError, match="'tpu'; allowed values"):
            mlflow.pyfunc.load_model(local)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' but torch sees no CUDA"):
            serving_device({"device": "cuda"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_served_model_answers_as_audioclf_predict_does(registry, trained, tmp_path):
    root, _ = registry
    checkpoint, data_root, splits = trained
    files = [str(data_root / e.path) for e in splits["test"][:2]]
    rows = predict_rows(files, checkpoint, tmp_path / "out")
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env["PYTHONPATH"] = str(REPO / "src")
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}/1"]
    cmd += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not answer /ping within 180 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        payload = {
            "dataframe_records": [
                {"audio_base64": base64.b64encode(Path(f).read_bytes()).decode()} for f in files
            ],
            "params": {"top_k": 2, "min_score": 0.0},
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())["predictions"]
        same_answers(rows, files, answer)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
