"""Terminal escapes in names and server answers never reach a message or a list of reasons; a
scikit-learn head that skops refuses, or that lies outside its checkpoint's folder, and a
checkpoint describing a model too large to build, each end in one clear error."""

import json
import operator
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import skops.io
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.fetch import DownloadError, RetryPolicy, fetch_json
from audioclf.models.checkpoint import CheckpointError, load_checkpoint
from audioclf.models.classical import MODEL_FILE, load_head

ESCAPES = "\x1b[2J\x1b]0;owned\x07\x1b[31m"


def test_a_member_name_with_terminal_escapes_is_refused_and_listed_escaped(
    tmp_path, audio, make_data, out_dir
):
    files = {
        "top/cls_a/1.wav": audio.wav(),
        "top/cls_b/2.wav": audio.wav(freq=900.0),
        f"top/cls_a/{ESCAPES}red.wav": audio.wav(),
    }
    (tmp_path / "a.zip").write_bytes(audio.zip(files))
    entries = DATASETS["folder"](make_data(archive=str(tmp_path / "a.zip")), 0, out_dir)
    assert sorted(e.path for e in entries) == ["audio/cls_a/1.wav", "audio/cls_b/2.wav"]
    listed = json.loads((out_dir / "unreadable.json").read_text())
    assert len(listed) == 1 and "control characters" in listed[0]["reason"]
    assert "\x1b" not in listed[0]["path"] and "\\x1b[2J" in listed[0]["path"]
    assert not any("\x1b" in p.name for p in out_dir.rglob("*"))


def test_a_server_answer_with_terminal_escapes_is_cleaned_from_the_message():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{ESCAPES}invalid key\x1b[0m".encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DownloadError) as err:
            url = f"http://127.0.0.1:{httpd.server_address[1]}/api"
            fetch_json(url, policy=RetryPolicy(retries=0, timeout_s=5.0))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "invalid key" in str(err.value) and "\x1b" not in str(err.value)


def _fitted(extra=()) -> Pipeline:
    x, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    return Pipeline([*extra, ("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y)


def test_a_head_skops_does_not_trust_is_refused_with_a_reason(tmp_path):
    (tmp_path / "sklearn").mkdir()
    untrusted = _fitted([("f", FunctionTransformer(func=operator.neg))])  # not in the trust list
    skops.io.dump(untrusted, tmp_path / "sklearn" / MODEL_FILE)
    ckpt = {"sklearn_model": "sklearn", "labels": ["a", "b"]}
    with pytest.raises(CheckpointError, match="types audioclf does not trust.*refusing to load"):
        load_head(tmp_path / "best.pt", ckpt)


@pytest.mark.parametrize("where", ["../elsewhere", "ABSOLUTE"])
def test_a_head_outside_the_checkpoints_folder_is_refused(tmp_path, where):
    (tmp_path / "elsewhere").mkdir()
    skops.io.dump(_fitted(), tmp_path / "elsewhere" / MODEL_FILE)  # a model skops would load
    (tmp_path / "models").mkdir()
    name = str(tmp_path / "elsewhere") if where == "ABSOLUTE" else where
    ckpt = {"sklearn_model": name, "labels": ["a", "b"]}
    with pytest.raises(CheckpointError, match="lies outside its folder"):
        load_head(tmp_path / "models" / "best.pt", ckpt)


def test_a_checkpoint_describing_a_model_too_large_to_build_is_refused(tmp_path):
    state = {
        "model_name": "cnn",
        "model_config": {"channels": [10**6, 10**6], "hidden": 8},
        "state_dict": {},
        "labels": ["a", "b"],
    }
    torch.save(state, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"params would refuse.*channels\[0\]"):
        load_checkpoint(tmp_path / "best.pt")


def test_a_checkpoint_whose_weights_do_not_fit_its_model_gets_a_reason(tmp_path):
    state = {
        "model_name": "cnn",
        "model_config": {"channels": [4, 8], "hidden": 8},
        "state_dict": {"features.0.weight": torch.zeros(3, 3)},
        "labels": ["a", "b"],
    }
    torch.save(state, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="does not rebuild into its model"):
        load_checkpoint(tmp_path / "best.pt")
