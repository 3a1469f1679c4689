"""Shared fixtures: a shrunk params set, a small synthetic dataset on disk, its feature table, a
git+DVC copy of the repository to run the pipeline in, and for the dataset adapters tiny audio
files, data params pointing at a temporary download cache, and a real HTTP server on 127.0.0.1
that can be told to misbehave (rate-limit, fail, drop the connection mid-file, ignore Range)."""

from __future__ import annotations

import os

# The test run's entry point, before torch loads: OpenMP threads that find a core busy sleep
# instead of spinning. On 2 shared cores a spinning thread made small torch operations 10-40x
# slower (fingerprinting 122 clips: 9.3 s against 0.6 s); the numbers computed are the same.
# Every subprocess the tests start (DVC stages, torchrun workers) inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import copy
import importlib.util
import io
import json
import shlex
import shutil
import subprocess
import threading
import zipfile
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audioclf.config import Params, parse_params
from audioclf.config.data import DataConfig
from audioclf.config.schema import build
from audioclf.data.datasets.synthetic import generate
from audioclf.data.manifest import Entry

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    # the files with end-to-end runs first (a stable sort: each file's tests stay together and in
    # order): with the suite spread over the cores by file (pytest -n auto --dist loadfile), the
    # longest files start at once instead of last
    slow = {item.path for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: item.path not in slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def shrink(raw: dict) -> dict:
    """A copy of params small enough for a CPU test: 6 classes, 1-s clips, 32 mels."""
    raw = copy.deepcopy(raw)
    raw["data"]["synthetic"].update(
        n_classes=6,
        max_clips_per_class=30,
        imbalance=2.0,
        clips_per_recording=[2, 3],
        clip_seconds=1.0,
        sample_rate=16000,
        snr_db=[10.0, 25.0],
    )
    raw["features"].update(
        sample_rate=16000, n_fft=512, hop_length=256, n_mels=32, segment_seconds=1.0
    )
    # 32 mels are few: keep full resolution in the stem
    raw["model_params"]["cnn"].update(channels=[8, 16, 32], hidden=16, stem_stride=1)
    raw["model_params"]["cnn_v2"].update(channels=[8, 16, 16, 32, 32], hidden=16, stem_stride=1)
    raw["train"].update(epochs=3, batch_size=8, lr=0.003, patience=3)
    return raw


@pytest.fixture
def raw_params() -> dict:
    return repo_params()


@pytest.fixture
def tiny_params() -> Params:
    return parse_params(shrink(repo_params()))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> tuple[Path, list[Entry]]:
    """The shrunk synthetic dataset written once per session: (folder, manifest entries)."""
    params = parse_params(shrink(repo_params()))
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate(params.data.synthetic, params.seed, out)


@pytest.fixture(scope="session")
def tiny_cache(tiny_dataset, tmp_path_factory):
    """The shrunk dataset's feature cache and a 60/20/20 grouped split: (cache folder, {split: entries})."""
    from audioclf.data.split import grouped_split
    from audioclf.features.extract import extract_features

    params = parse_params(shrink(repo_params()))
    root, entries = tiny_dataset
    cache = tmp_path_factory.mktemp("cache") / "features"
    extract_features(entries, root, params.features, cache, store_dir=cache.parent / "store")
    return cache, grouped_split(entries, {"train": 0.6, "val": 0.2, "test": 0.2}, params.seed)


@pytest.fixture(scope="session")
def functionals(tiny_dataset, tiny_cache, tmp_path_factory):
    """The tiny dataset's ComParE 2016 functionals, split as ``tiny_cache``: (table folder,
    {split: paths}). Needs the opensmile extra (CI installs it); skipped without it."""
    from audioclf.config.features import FeaturesConfig
    from audioclf.features.extract import extract_features
    from audioclf.features.opensmile import missing

    if missing() is not None:
        pytest.skip(f"the opensmile extra is not installed: {missing()}")
    root, entries = tiny_dataset
    cfg = FeaturesConfig(kind="compare", sample_rate=16000, segment_seconds=1.0)  # as tiny_params
    folder = tmp_path_factory.mktemp("compare") / "features"
    extract_features(entries, root, cfg, folder, store_dir=folder.parent / "store")
    return folder, {k: [e.path for e in v] for k, v in tiny_cache[1].items()}


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git+DVC copy of the working tree with shrunk params and its environment."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file() and not rel.startswith("reports/"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "dvc.lock").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(root / "src"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        run(cmd, root, env)
    return root, env


STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def stage_main(name: str) -> Callable[[list[str]], Any]:
    """The ``main`` of ``stages/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_stages(root: Path, names: list[str] = STAGES, tracking_uri: str | None = None) -> None:
    """Run the stages ``names`` in-process in ``root``, with the arguments dvc.yaml gives them,
    as ``dvc repro`` would (without DVC: no hashing, no cache, no subprocess). Each stage finds
    the environment as the one before found it, as a process of its own would, with
    ``MLFLOW_TRACKING_URI`` set to ``tracking_uri`` or unset (MLflow exports the URI any earlier
    run in this process used: a stage would take it for the user's)."""
    from audioclf.cli import run as run_main

    commands = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    with contextlib.chdir(root):
        for name in names:
            argv = shlex.split(commands[name]["cmd"])
            environ = dict(os.environ)
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            if tracking_uri:
                os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
            try:
                run_main(stage_main(name), argv[argv.index(f"stages/{name}.py") + 1 :])
            finally:
                os.environ.clear()
                os.environ.update(environ)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """A workspace with shrunk params.yaml in which every stage has run once, in-process, with the
    default model; tests copy it (:func:`workspace_copy`) before running stages of their own."""
    root = tmp_path_factory.mktemp("pipeline")
    (root / "params.yaml").write_text(yaml.safe_dump(shrink(repo_params()), sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
            mp.delenv(name, raising=False)
        run_stages(root)
    return root


def set_params(root: Path, **values: Any) -> None:
    """Set ``values`` (dotted keys, as ``dvc exp run -S``) in ``root``'s params.yaml."""
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for key, value in values.items():
        *path, last = key.split(".")
        node = raw
        for part in path:
            node = node[part]
        node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def workspace_copy(pipeline: Path, dest: Path, **params: Any) -> Path:
    """A copy of the ``pipeline`` workspace at ``dest`` with ``params`` (dotted keys) set, and an
    MLflow store of its own (a store's artifact root names its folder: it does not move)."""
    skip = shutil.ignore_patterns("mlflow.db", "mlartifacts")
    shutil.copytree(pipeline, dest, symlinks=True, ignore=skip)
    set_params(dest, **params)
    return dest


FAULTS = ("429", "503", "403", "truncate", "ignore-range")


class FakeServer:
    """Serves ``files`` (path -> bytes) and ``api`` (path -> handler of the query dict).

    ``faults[path]`` is a queue of misbehaviours, one consumed per request to ``path``.
    Every request is recorded in ``requests`` as ``(path with query, Range header)``.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.api: dict[str, Callable[[dict[str, str]], Any]] = {}
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.requests: list[tuple[str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner._serve(self)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def hits(self, path: str) -> list[str | None]:
        """Range headers of the requests made to ``path`` (query ignored)."""
        return [rng for full, rng in self.requests if urlsplit(full).path == path]

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        self.requests.append((h.path, h.headers.get("Range")))
        fault = self.faults[parts.path].pop(0) if self.faults[parts.path] else None
        assert fault in (None, *FAULTS), fault
        if fault in ("429", "503"):
            return self._reply(h, int(fault), b"busy")
        if fault == "403":
            return self._reply(
                h, 403, json.dumps({"error": "forbidden", "message": "invalid key"}).encode()
            )
        if parts.path in self.api:
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            return self._reply(h, 200, json.dumps(self.api[parts.path](query)).encode())
        if parts.path not in self.files:
            return self._reply(h, 404, b"not found")
        data = self.files[parts.path]
        start, header = 0, h.headers.get("Range")
        if header and fault != "ignore-range":
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._reply(h, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        # "truncate": promise the whole body, send half, hang up (HTTP/1.0 closes the socket)
        h.wfile.write(body[: len(body) // 2] if fault == "truncate" else body)

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None
    ) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


@pytest.fixture
def server():
    srv = FakeServer()
    srv._thread.start()
    yield srv
    srv._httpd.shutdown()
    srv._httpd.server_close()


def tone(
    seconds: float = 0.05, sr: int = 8000, freq: float = 440.0, channels: int = 1
) -> np.ndarray:
    """A short sine, shape (n,) or (n, channels)."""
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


def audio_bytes(
    fmt: str = "WAV", seconds: float = 0.05, sr: int = 8000, freq: float = 440.0, channels: int = 1
) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, sr, freq, channels), sr, format=fmt)
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def audio():
    """Helpers to make test audio and archives: ``audio.wav()``, ``audio.zip({...})``..."""

    class Audio:
        bytes = staticmethod(audio_bytes)
        zip = staticmethod(make_zip)
        tree = staticmethod(write_tree)

        @staticmethod
        def wav(**kw) -> bytes:
            return audio_bytes("WAV", **kw)

    return Audio


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def make_data(tmp_path):
    """``make_data(**raw)`` -> validated DataConfig with a temp cache and fast retries."""

    def make(**raw) -> DataConfig:
        base = {
            "download_dir": str(tmp_path / "downloads"),
            "retries": 3,
            "backoff_s": 0.001,
            "timeout_s": 5.0,
        }
        return build(DataConfig, _merge(base, raw), "data")

    return make


@pytest.fixture
def out_dir(tmp_path) -> Path:
    path = tmp_path / "raw"
    path.mkdir()
    return path


@pytest.fixture
def offline_url():
    """A URL on a local port nobody listens on: every request is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/download/download.zip"


def mlflow_runs(root: Path | str) -> list[dict]:
    """Every MLflow run of the store at ``root`` (its mlflow.db, or a tracking URI): name,
    status, metrics, tags, artifact URI and top-level artifacts."""
    from mlflow.tracking import MlflowClient

    uri = root if isinstance(root, str) else f"sqlite:///{Path(root) / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [
        {
            "name": r.info.run_name,
            "status": r.info.status,
            "metrics": r.data.metrics,
            "tags": r.data.tags,
            "artifact_uri": r.info.artifact_uri,
            "artifacts": [a.path for a in client.list_artifacts(r.info.run_id)],
        }
        for r in runs
    ]


def registered_versions(root: Path, name: str = "audioclf-synthetic") -> list[dict]:
    """Every version of the registered model ``name`` in the store at ``root``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return [
        {"version": v.version, "tags": v.tags, "run_id": v.run_id}
        for v in client.search_model_versions(f"name='{name}'")
    ]


@pytest.fixture(scope="module")
def one_thread():
    """One thread for torch and BLAS in a module's tests, the caller's counts restored after.

    On a busy 2-core machine the threads of one parallel region wait on each other whenever
    one of them is descheduled; the small models and heads these tests fit gain nothing from
    a second thread. Request it with ``pytestmark = pytest.mark.usefixtures("one_thread")``:
    as a module fixture it is set up before the module's own training fixtures.
    """
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)
