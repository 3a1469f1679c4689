"""The MLflow Model: registered with its metrics, and its answer -- loaded in-process, or served over
HTTP on 127.0.0.1 -- is ``audioclf predict``'s on the same audio."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def serving(command: list[str], root: Path, log_path: Path, **environ: str) -> Iterator[str]:
    """``command`` (a server, given ``--port``) running in ``root`` with the registry's store, until
    it answers ``/ping``: its URL. Stopped, with its children, on the way out."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", **environ}
    env["PYTHONPATH"] = str(REPO / "src")
    log = open(log_path, "w")
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not answer /ping within 180 s"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _post(url: str, payload, **headers: str) -> dict:
    """POST ``payload`` (a dict as JSON, or an iterable of bytes: sent in chunks) to /invocations."""
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    request = urllib.request.Request(
        f"{url}/invocations", data=data, headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def _base64_request(files: list[str]) -> dict:
    records = [{"audio_base64": base64.b64encode(Path(f).read_bytes()).decode()} for f in files]
    return {"dataframe_records": records, "params": {"top_k": 2, "min_score": 0.0}}


@pytest.mark.slow
def test_the_served_model_answers_as_audioclf_predict_does(registry, trained, tmp_path):
    root, _ = registry
    checkpoint, data_root, splits = trained
    files = [str(data_root / e.path) for e in splits["test"][:2]]
    rows = predict_rows(files, checkpoint, tmp_path / "out")
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}/1"]
    command += ["--env-manager", "local", "--workers", "1"]
    with serving(command, root, tmp_path / "serve.log") as url:
        same_answers(rows, files, _post(url, _base64_request(files))["predictions"])


def _refusal(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    """Send a POST to /invocations as its bytes, the body perhaps short of what the headers
    declare, and read the answer: (status, JSON body)."""
    port = int(url.rsplit(":", 1)[1])
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{head}"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{head}\r\n".encode() + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


@pytest.mark.slow
def test_audioclf_serve_bounds_each_request_and_answers_the_next(registry, trained, tmp_path):
    """A body past the bound is refused unread; the deadline counts the parsing of a body too;
    a good request is then answered as audioclf predict answers it."""
    root, _ = registry
    checkpoint, data_root, splits = trained
    files = [str(data_root / e.path) for e in splits["test"][:2]]
    rows = predict_rows(files, checkpoint, tmp_path / "out")
    command = [sys.executable, "-m", "audioclf", "serve", "-m", f"models:/{NAME}/1"]
    chunk = b"[" + b"0.125," * 100_000 + b"0]"  # 600 KB of float samples
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(70)) + b"0\r\n\r\n"
    # 5 million float samples (a 30-MB body): seconds to parse, well under a second to score
    slow = b'{"dataframe_records": [{"sample_rate": 16000, "samples": [' + b"0.125," * 5_000_000
    slow += b'0]}], "params": {"min_score": 0.0}}'
    bounds = {"AUDIOCLF_SERVE_MAX_BODY_MB": "32", "AUDIOCLF_SERVE_DEADLINE_S": "1.5"}
    with serving(command, root, tmp_path / "serve.log", **bounds) as url:
        # an hour of float samples declared (a 433 MB body), the client waiting to be told to
        # send it (curl's way with large bodies): refused with none of it sent
        headers = {"Content-Length": "433000000", "Expect": "100-continue"}
        status, answer = _refusal(url, headers, b"")
        assert status == 413 and answer["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert answer["message"].startswith(
            "the request body is 433.0 MB, above the bound of 32 MB"
        )
        # 42 MB in chunks, no length declared: refused once past the bound, the rest dropped
        status, answer = _refusal(url, {"Transfer-Encoding": "chunked"}, chunked)
        assert status == 413 and answer["message"].startswith(
            "the request body passed the bound of 32 MB"
        )
        # the deadline ran out while MLflow's server parsed the body: nothing is scored for it
        answer = _post(url, slow)["predictions"]
        assert [a["error"] for a in answer] == [
            "not scored: the request ran past its deadline (1.5 s, AUDIOCLF_SERVE_DEADLINE_S)"
        ]
        same_answers(rows, files, _post(url, _base64_request(files))["predictions"])
        with urllib.request.urlopen(f"{url}/version", timeout=5) as r:
            assert r.read().decode() == mlflow.__version__  # MLflow's own app behind the bounds
    assert "bodies up to 32 MB" in (tmp_path / "serve.log").read_text()
