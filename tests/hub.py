"""A Hugging Face Hub stand-in on 127.0.0.1: the routes ``snapshot_download`` uses, nothing more.

``huggingface_hub`` (2.x) asks ``/api/models/<id>/revision/<rev>`` for a branch's commit (a
commit hash skips it), lists files with ``/api/models/<id>/tree/<commit>``, then sends HEAD and
GET to ``/<id>/resolve/<commit>/<file>``, reading ``X-Repo-Commit``, ``ETag`` (a weight file's
sha256, as the Hub gives for LFS files) and ``Content-Length``. Errors carry the Hub's
``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which the
library maps to its exceptions.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin")  # stored in git LFS on the Hub: their ETag is the sha256


class HubStandIn:
    """Repositories at fixed commits, served over HTTP; ``url`` goes into ``HF_ENDPOINT``.

    ``damage[(repo_id, file)]`` serves a file ``"truncated"`` (the body stops halfway while the
    HEAD announced the whole size) or ``"altered"`` (same size, other bytes, same ETag).
    ``requests`` counts what was asked, to show a later run asks nothing.
    """

    def __init__(self):
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}  # id -> commit -> file -> bytes
        self.refs: dict[str, dict[str, str]] = {}  # id -> branch -> commit
        self.damage: dict[tuple[str, str], str] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, folder: Path, *, branch: str = "main") -> str:
        """Serve ``folder``'s files as a new commit of ``repo_id`` on ``branch``; its hash."""
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
        digest = hashlib.sha1(repo_id.encode())
        for name, data in files.items():
            digest.update(name.encode() + hashlib.sha1(data).digest())
        commit = digest.hexdigest()
        self.repos.setdefault(repo_id, {})[commit] = files
        self.refs.setdefault(repo_id, {})[branch] = commit
        return commit

    def _commit(self, repo_id: str, rev: str) -> str | None:
        if rev in self.repos[repo_id]:
            return rev
        return self.refs[repo_id].get(rev)

    @staticmethod
    def _etag(name: str, data: bytes) -> str:
        if name.endswith(LFS_SUFFIXES):
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id

    def _answer(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, route, rev = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            self._api(handler, repo_id, route, rev)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(handler, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        else:
            self._error(handler, 404, "RepoNotFound")

    def _api(self, handler, repo_id: str, route: str, rev: str) -> None:
        if repo_id not in self.repos:
            return self._error(handler, 404, "RepoNotFound")
        commit = self._commit(repo_id, rev)
        if commit is None:
            return self._error(handler, 404, "RevisionNotFound")
        files = self.repos[repo_id][commit]
        if route == "revision":
            info = {"id": repo_id, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
            return self._json(handler, info)
        entries = []
        for name, data in files.items():
            entry = {"type": "file", "path": name, "size": len(data), "oid": self._etag(name, b"")}
            if name.endswith(LFS_SUFFIXES):
                lfs = {"oid": self._etag(name, data), "size": len(data), "pointerSize": 134}
                entry["lfs"] = lfs
            entries.append(entry)
        return self._json(handler, entries)

    def _resolve(self, handler, repo_id: str, rev: str, name: str, body: bool) -> None:
        if repo_id not in self.repos:
            return self._error(handler, 404, "RepoNotFound")
        commit = self._commit(repo_id, rev)
        if commit is None:
            return self._error(handler, 404, "RevisionNotFound")
        data = self.repos[repo_id][commit].get(name)
        if data is None:
            return self._error(handler, 404, "EntryNotFound")
        sent = data
        damage = self.damage.get((repo_id, name))
        if damage == "altered":
            sent = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        elif damage == "truncated" and body:
            sent = data[: len(data) // 2]
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("ETag", f'"{self._etag(name, data)}"')
        handler.send_header("Content-Length", str(len(sent)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if body:
            handler.wfile.write(sent)

    @staticmethod
    def _json(handler, value) -> None:
        data = json.dumps(value).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command == "GET":
            handler.wfile.write(data)

    @staticmethod
    def _error(handler, status: int, code: str) -> None:
        data = json.dumps({"error": code}).encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command == "GET":
            handler.wfile.write(data)


def save_tiny_ast(
    folder,
    *,
    max_length: int,
    num_mel_bins: int = 128,
    num_labels: int = 5,
    extractor: dict | None = None,
    seed: int = 0,
) -> Path:
    """A 2-layer AST and its feature extractor (AudioSet-like statistics unless ``extractor``
    gives its settings), saved as ``save_pretrained`` does."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(seed)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=max_length,
        num_mel_bins=num_mel_bins,
        num_labels=num_labels,
    )
    ASTForAudioClassification(config).save_pretrained(folder)
    ASTFeatureExtractor(**(extractor or {"mean": -4.0, "std": 4.0})).save_pretrained(folder)
    return Path(folder)
