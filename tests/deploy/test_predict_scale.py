"""``audioclf predict`` at archive scale: a killed run resumes to the tables of an uninterrupted one,
shards cover the inputs once, a folder of another run is refused, embeddings are the network's
penultimate layer, and hostile folders (links out, empty and non-audio files) are handled."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from audioclf.deploy import predict
from audioclf.deploy.model import load_model
from audioclf.deploy.predict import RunMismatch, shard_of
from audioclf.features.stream import decoded_blocks, sliding_windows

REPO = Path(__file__).resolve().parents[2]
RATE = 16000


def _folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` short recordings (0.5-1.6 s of tones in noise) in two sub-folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        seconds = rng.uniform(0.5, 1.6)
        t = np.arange(int(seconds * RATE)) / RATE
        audio = 0.3 * np.sin(2 * np.pi * rng.uniform(300, 6000) * t)
        audio += 0.02 * rng.standard_normal(len(t))
        path = root / f"site_{i % 2}" / f"clip_{i:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio.astype(np.float32), RATE, subtype="PCM_16")
    return root


def _args(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(checkpoint), "--out", str(out), "--min-score", "0", *extra]


def _tables(out: Path) -> dict[str, str]:
    """Every table of a run's folder, by its path below it (the ledger and run.json aside)."""
    return {
        str(p.relative_to(out)): p.read_text()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("ledger.csv", "run.json")
    }


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_run_killed_at_random_points_resumes_to_the_uninterrupted_tables(trained, tmp_path):
    checkpoint, _, _ = trained
    inputs = _folder(tmp_path / "in", 240)
    (inputs / "site_0" / "empty.wav").write_bytes(b"")
    (inputs / "site_1" / "text.wav").write_text("not audio")
    same = ("--raven", "combined", "--batch-size", "1", "--workers", "1")  # one command for all
    whole = tmp_path / "whole"
    predict.main([str(inputs), *_args(checkpoint, whole, *same)])
    killed = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "audioclf",
        "predict",
        str(inputs),
        *_args(checkpoint, killed, *same),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    rng = random.Random(3)
    for _ in range(2):  # kill -9 twice, each once some recordings are done
        target = rng.randint(20, 160)
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        ledger, deadline = killed / "ledger.csv", time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if ledger.is_file() and ledger.read_text().count("\n") > target:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert ledger.read_text().count("\n") < 243, "the run ended before it was killed"
    result = predict.main([str(inputs), *_args(checkpoint, killed, *same)])
    assert 0 < result["resumed"] < 242
    assert result["resumed"] + result["predicted"] + result["failed"] == 242
    assert _tables(killed) == _tables(whole)
    failed = {Path(r["file"]).name for r in _rows(whole / "failed.csv")}
    assert failed == {"empty.wav", "text.wav"}
    # a finished folder reruns to nothing new
    again = predict.main([str(inputs), *_args(checkpoint, killed, *same)])
    assert again["resumed"] == 242 and again["predicted"] == 0 and _tables(killed) == _tables(whole)


def test_rows_of_an_unfinished_file_are_cut_off_on_resume(trained, tmp_path):
    checkpoint, _, _ = trained
    inputs = _folder(tmp_path / "in", 6)
    out = tmp_path / "out"
    predict.main([str(inputs), *_args(checkpoint, out)])
    reference = _tables(out)
    # as a kill leaves it: the last file's rows written, its ledger line cut short
    ledger = (out / "ledger.csv").read_text().splitlines(keepends=True)
    (out / "ledger.csv").write_text("".join(ledger[:-1]) + ledger[-1][:9])
    with open(out / "windows.csv", "a") as fh:
        fh.write("half a row,0.0")
    result = predict.main([str(inputs), *_args(checkpoint, out)])
    assert result["resumed"] == 5 and result["predicted"] == 1
    assert _tables(out) == reference


def test_a_folder_of_another_run_is_refused_naming_the_difference(trained, tmp_path):
    from tests.deploy.test_predict import _untrained_twin

    checkpoint, _, _ = trained
    inputs = _folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    predict.main([str(inputs), *_args(checkpoint, out)])
    with pytest.raises(RunMismatch, match=r"overlap: 0\.0 there, 0\.5 now"):
        predict.main([str(inputs), *_args(checkpoint, out, "--overlap", "0.5")])
    other = tmp_path / "other.pt"
    _untrained_twin(checkpoint, other)
    with pytest.raises(RunMismatch, match="model_id: 'cnn-"):
        predict.main([str(inputs), *_args(other, out)])


def test_shards_cover_every_input_once_whatever_the_order(trained, tmp_path):
    names = [f"site_{i % 7}/rec_{i:05d}.flac" for i in range(2000)]
    for n in (1, 2, 3, 8):
        shards = [shard_of(name, n) for name in names]
        assert set(shards) == set(range(1, n + 1))
        shuffled = random.Random(n).sample(names, len(names))
        assert {name: shard_of(name, n) for name in shuffled} == dict(
            zip(names, shards, strict=True)
        )
    checkpoint, _, _ = trained
    inputs = _folder(tmp_path / "in", 24)
    files = sorted(str(p) for p in inputs.rglob("*.wav"))
    predict.main([*files, *_args(checkpoint, tmp_path / "one")])
    shuffled = random.Random(0).sample(files, len(files))
    for k in (1, 2, 3):
        predict.main([*shuffled, *_args(checkpoint, tmp_path / "shards", "--shard", f"{k}/3")])
    parts = [_rows(tmp_path / "shards" / f"shard-{k}-of-3" / "windows.csv") for k in (1, 2, 3)]
    assert all(parts) and sum(map(len, parts)) == len(_rows(tmp_path / "one" / "windows.csv"))
    key = lambda r: (r["file"], r["start_s"], r["rank"])  # noqa: E731
    merged = sorted((r for part in parts for r in part), key=key)
    assert merged == sorted(_rows(tmp_path / "one" / "windows.csv"), key=key)


def test_embeddings_are_the_networks_penultimate_layer(trained, tmp_path):
    checkpoint, root, splits = trained
    files = [str(root / e.path) for e in splits["test"][:3]]
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(sf.read(files[0], dtype="float32")[0], 4), RATE)
    out = tmp_path / "out"
    predict.main([*files, str(long), *_args(checkpoint, out, "--embeddings", "--overlap", "0.5")])
    model = load_model(checkpoint)
    network = model.classifier.network
    (path,) = (out / "embeddings").rglob("long.parquet")
    table = pq.read_table(path).to_pydict()
    vectors = np.array(table["embedding"], dtype=np.float32)  # (W, D)
    assert vectors.shape == (7, network.head[-1].in_features)  # 4 s, 1-s windows 0.5 s apart
    assert set(table["model_id"]) == {predict.model_id(model)}
    n = model.features.segment_samples
    windows = list(sliding_windows(decoded_blocks(str(long), RATE), n, n // 2))
    assert table["start_s"] == [w.start / RATE for w in windows]
    features = model.featurize(np.stack([w.samples for w in windows]))
    with torch.inference_mode():
        x = (features - model.classifier.mean) / model.classifier.std
        h = network.features(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        expected = network.head[:-1](pooled).numpy()  # (W, hidden)
    np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-5)
    # the windows.csv of the same run is the run without embeddings
    plain = tmp_path / "plain"
    predict.main([*files, str(long), *_args(checkpoint, plain, "--overlap", "0.5")])
    with_emb, without = _rows(out / "windows.csv"), _rows(plain / "windows.csv")
    assert [r["label"] for r in with_emb] == [r["label"] for r in without]


def test_devices(trained, tmp_path):
    checkpoint, root, splits = trained
    clip = str(root / splits["test"][0].path)
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="'--device' is 'cuda' but torch sees no CUDA device"):
            predict.main([clip, *_args(checkpoint, tmp_path / "cuda", "--device", "cuda")])
        pytest.skip("no CUDA device: the cuda path runs where one is")
    files = [str(root / e.path) for e in splits["test"][:8]]
    predict.main([*files, *_args(checkpoint, tmp_path / "cpu")])
    predict.main([*files, *_args(checkpoint, tmp_path / "gpu", "--device", "cuda")])
    cpu, gpu = _rows(tmp_path / "cpu" / "windows.csv"), _rows(tmp_path / "gpu" / "windows.csv")
    assert [r["label"] for r in cpu] == [r["label"] for r in gpu]


def test_links_out_of_an_input_folder_are_not_followed(trained, tmp_path, caplog):
    checkpoint, _, _ = trained
    inputs = _folder(tmp_path / "in", 2)
    secret = _folder(tmp_path / "elsewhere", 1)
    (inputs / "link.wav").symlink_to(next(secret.rglob("*.wav")))
    (inputs / "dir_link").symlink_to(secret, target_is_directory=True)
    (inputs / "inside.wav").symlink_to(next(inputs.rglob("clip_0000.wav")))
    found = predict.find_inputs([str(inputs)])
    assert sorted(Path(f).name for f in found) == ["clip_0000.wav", "clip_0001.wav", "inside.wav"]
    assert "1 link(s)" in caplog.text
