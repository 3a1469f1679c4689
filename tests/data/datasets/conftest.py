"""Fixtures for the dataset adapters: tiny audio files, data params pointing at a
temporary download cache, and a real HTTP server on 127.0.0.1 that can be told to
misbehave (rate-limit, fail, drop the connection mid-file, ignore Range)."""

from __future__ import annotations

import io
import json
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

from audioclf.config.data import DataConfig
from audioclf.config.schema import build

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
