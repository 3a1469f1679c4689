"""``audioclf predict``: planted calls found by a trained model, the same features as the pipeline,
exact window times after an hour, and the tables by their formats' rules."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.deploy import predict
from audioclf.deploy.model import load_model
from audioclf.deploy.predict import find_inputs
from audioclf.deploy.predictor import PredictError, predict_recordings
from audioclf.deploy.tables import RAVEN_COLUMNS, RAVEN_COMBINED, output_names
from audioclf.errors import MissingInputError, UserError
from audioclf.features.stream import decoded_blocks
from audioclf.features.table import FeatureTable, load_split
from audioclf.models import build_model
from audioclf.models.checkpoint import load_checkpoint, save_checkpoint
from audioclf.models.inference import segment_probabilities

RATE = 16000  # the shrunk params' rate and 1-s segment


def _rows(path: Path, delimiter: str = ",") -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def _planted(trained, tmp_path: Path, per_label: int = 4) -> tuple[Path, list[tuple[int, str]]]:
    """A 3-minute recording of quiet noise with held-out test clips planted at known windows:
    (file, [(window index, label)])."""
    _, root, splits = trained
    by_label: dict[str, list[str]] = {}
    for e in splits["test"]:
        by_label.setdefault(e.label, []).append(e.path)
    rng = np.random.default_rng(7)
    audio = (0.002 * rng.standard_normal(180 * RATE)).astype(np.float32)
    planted, k = [], 3
    for label in sorted(by_label):
        for path in by_label[label][:per_label]:
            clip, rate = sf.read(root / path, dtype="float32")
            assert rate == RATE and len(clip) == RATE
            audio[k * RATE : (k + 1) * RATE] += clip
            planted.append((k, label))
            k += 5
    assert k < 180
    out = tmp_path / "field" / "long_recording.wav"
    out.parent.mkdir()
    sf.write(out, audio, RATE, subtype="PCM_16")
    return out, planted


def _predict(args: list[str]) -> dict:
    """``audioclf predict`` listing every window's top labels (``args`` may set --min-score)."""
    return predict.main(["--min-score", "0", *args, "--workers", "2"])


def test_planted_calls_are_found_in_their_windows_with_their_labels(trained, tmp_path):
    checkpoint, _, _ = trained
    recording, planted = _planted(trained, tmp_path)
    out = tmp_path / "out"
    result = _predict([str(recording), "--model", str(checkpoint), "--out", str(out)])
    assert result["predicted"] == 1 and result["windows"] == 180
    top = {round(float(r["start_s"])): r["label"] for r in _rows(out / "windows.csv")}
    hits = [top[k] == label for k, label in planted]
    chance = 1 / len({label for _, label in planted})
    assert np.mean(hits) >= 0.75, (np.mean(hits), chance)
    # learned, not built in: the same network, untrained, finds them no better than chance allows
    untrained = tmp_path / "untrained.pt"
    _untrained_twin(checkpoint, untrained)
    _predict([str(recording), "--model", str(untrained), "--out", str(tmp_path / "u")])
    top = {round(float(r["start_s"])): r["label"] for r in _rows(tmp_path / "u" / "windows.csv")}
    assert np.mean([top[k] == label for k, label in planted]) <= chance + 0.25


def _untrained_twin(checkpoint: Path, out: Path) -> None:
    """A checkpoint like ``checkpoint`` (labels, front-end, normalisation) with fresh weights."""
    network, ckpt = load_checkpoint(checkpoint)
    torch.manual_seed(0)
    fresh = build_model(
        ckpt["model_name"], network.cfg, len(ckpt["labels"]), input_shape=ckpt["input_shape"]
    )
    keep = ("labels", "norm", "params", "input_shape", "in_channels", "frontend")
    save_checkpoint(
        out,
        model=fresh,
        model_name=ckpt["model_name"],
        model_config=network.cfg,
        **{k: ckpt[k] for k in keep},
    )


def test_window_scores_equal_the_pipelines_on_the_same_clips(trained, tiny_cache):
    """Decoding, front-end and normalisation are the features stage's: a clip's window scores
    equal the scores of its segment in the feature table."""
    checkpoint, root, splits = trained
    cache, _ = tiny_cache
    model, (_, ckpt) = load_model(checkpoint), load_checkpoint(checkpoint)
    paths = [e.path for e in splits["test"]][:20]
    data = load_split(FeatureTable(cache), paths, ckpt["norm"])
    reference = segment_probabilities(model.classifier.network, data, batch_size=8)  # (S, C)
    sources = [(p, lambda rate, p=p: decoded_blocks(root / p, rate)) for p in data.paths]
    got = np.concatenate([r.probs for r in predict_recordings(model, sources, batch_size=7)])
    assert got.shape == reference.shape
    np.testing.assert_allclose(got, reference, atol=1e-5)


def _long_wav(path: Path, seconds: int) -> Path:
    rng = np.random.default_rng(3)
    with sf.SoundFile(str(path), "w", RATE, 1, "PCM_16") as fh:
        for _ in range(0, seconds, 60):
            fh.write((0.05 * rng.standard_normal(60 * RATE)).astype(np.float32))
    return path


def test_window_times_are_exact_after_an_hour(trained, tmp_path):
    checkpoint, _, _ = trained
    recording = _long_wav(tmp_path / "hour.wav", 3600)
    out = tmp_path / "out"
    _predict([str(recording), "--model", str(checkpoint), "--out", str(out), "--overlap", "0.3"])
    rows = _rows(out / "windows.csv")
    hop, n, total = RATE - int(0.3 * RATE), RATE, 3600 * RATE
    full = 1 + (total - n) // hop
    assert len(rows) == full + 1  # and one last, partial window
    for k, row in enumerate(rows):
        assert row["start_s"] == f"{k * hop / RATE:.6f}"
        assert round(float(row["start_s"]) * RATE) == k * hop
        assert row["end_s"] == f"{min(k * hop + n, total) / RATE:.6f}"
        assert row["fill"] == ("pad" if k == full else "")
    assert rows[-1]["end_s"] == "3600.000000"
    assert rows[-1]["start_s"] == "3599.400000"  # 5142 hops of 0.7 s: no drift


def test_a_corrupt_file_in_a_folder_is_listed_and_the_rest_predicted(trained, tmp_path, caplog):
    checkpoint, root, splits = trained
    folder = tmp_path / "recordings"
    folder.mkdir()
    good = [e.path for e in splits["test"][:3]]
    for p in good:
        (folder / Path(p).name).write_bytes((root / p).read_bytes())
    (folder / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    (folder / "empty.flac").write_bytes(b"")
    damaged = folder / "damaged.wav"  # a header that promises more than the file holds
    damaged.write_bytes((root / good[0]).read_bytes()[:200])
    (folder / "notes.txt").write_text("not audio: not an input")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="audioclf"):
        predict.main([str(folder), "--model", str(checkpoint), "--out", str(out)])
    failed = {Path(r["file"]).name: r["reason"] for r in _rows(out / "failed.csv")}
    assert set(failed) == {"garbage.wav", "empty.flac"} | (
        {"damaged.wav"} if "damaged.wav" in failed else set()
    )
    assert all(reason.split(":")[0] in ("unreadable", "empty") for reason in failed.values())
    assert any("garbage.wav" in r.message and "skipped" in r.message for r in caplog.records)
    predicted = {Path(r["file"]).name for r in _rows(out / "summary.csv")}
    assert {Path(p).name for p in good} <= predicted
    assert not predicted & set(failed)


def _raven(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().split("\n")
    assert lines[-1] == "" and all(lines[:-1]), "one selection per line, newline-terminated"
    header, *rows = [line.split("\t") for line in lines[:-1]]
    assert all(len(r) == len(header) for r in rows)
    return header, rows


def test_raven_and_audacity_tables_follow_their_formats(trained, tmp_path):
    checkpoint, root, splits = trained
    files = [str(root / e.path) for e in splits["test"][:4]]
    per_file, combined = tmp_path / "per_file", tmp_path / "combined"
    args = ["--model", str(checkpoint), "--top-k", "2", "--overlap", "0.5"]
    _predict([*files, *args, "--out", str(per_file)])
    _predict([*files, *args, "--out", str(combined), "--raven", "combined", "--no-audacity"])
    names = output_names(files)
    durations = [sf.info(f).duration for f in files]
    for f in files:
        header, rows = _raven(per_file / "raven" / f"{names[f]}.selections.txt")
        assert header == list(RAVEN_COLUMNS)
        assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
        for r in rows:
            sel = dict(zip(header, r, strict=True))
            assert sel["View"] == "Spectrogram 1" and int(sel["Channel"]) == 1
            assert 0 <= float(sel["Begin Time (s)"]) < float(sel["End Time (s)"])
            assert 0 <= float(sel["Low Freq (Hz)"]) < float(sel["High Freq (Hz)"]) == RATE / 2
            assert 0 <= float(sel["Score"]) <= 1 and sel["Rank"] in ("1", "2")
        assert len(rows) == 2  # a 1-s clip is one whole 1-s window (nothing left to pad): top 2
        labels = (per_file / "audacity" / f"{names[f]}.labels.txt").read_text().splitlines()
        assert len(labels) == len(rows)
        for line in labels:
            start, end, text = line.split("\t")
            assert 0 <= float(start) <= float(end) and text.split(" ")[0].startswith("species_")
            assert math.isfinite(float(text.split(" ")[1]))
    header, rows = _raven(combined / "selections.txt")
    assert header == list(RAVEN_COLUMNS + RAVEN_COMBINED)
    offsets = dict(zip(files, np.cumsum([0.0, *durations[:-1]]), strict=True))
    for r in rows:
        sel = dict(zip(header, r, strict=True))
        begin = offsets[sel["Begin Path"]] + float(sel["File Offset (s)"])
        assert float(sel["Begin Time (s)"]) == pytest.approx(begin, abs=1e-6)
    assert not (combined / "audacity").exists() and not (combined / "raven").exists()


def test_summary_top_k_and_min_score(trained, tmp_path):
    checkpoint, root, splits = trained
    files = [str(root / e.path) for e in splits["test"][:3]]
    out = tmp_path / "all"
    _predict([*files, "--model", str(checkpoint), "--top-k", "6", "--out", str(out)])
    windows, summary = _rows(out / "windows.csv"), _rows(out / "summary.csv")
    assert len(windows) == 3 * 6 and len(summary) == 3 * 6
    for s in summary:  # one 1-s window per clip: max and mean are that window's score
        w = next(r for r in windows if r["file"] == s["file"] and r["label"] == s["label"])
        assert s["max_score"] == s["mean_score"] == w["score"]
    scores = {(r["file"], r["label"]): float(r["score"]) for r in windows}
    assert all(
        abs(sum(v for (f, _), v in scores.items() if f == file) - 1) < 1e-4 for file in files
    )
    strict = tmp_path / "strict"
    args = ["--top-k", "3", "--min-score", "0.2", "--out", str(strict)]
    _predict([*files, "--model", str(checkpoint), *args])
    expected = set()
    for file in files:
        ranked = sorted(((v, lab) for (f, lab), v in scores.items() if f == file), reverse=True)
        expected |= {(file, lab, k + 1) for k, (v, lab) in enumerate(ranked[:3]) if v >= 0.2}
    kept = {(r["file"], r["label"], int(r["rank"])) for r in _rows(strict / "windows.csv")}
    assert kept == expected and len(kept) >= len(files)


def test_bad_inputs_and_settings_are_refused_with_the_fix(trained, tmp_path):
    checkpoint, root, splits = trained
    with pytest.raises(MissingInputError, match="no file or folder matches"):
        find_inputs([str(tmp_path / "nowhere" / "*.wav")])
    with pytest.raises(MissingInputError, match="no audio files"):
        find_inputs([str(tmp_path)])
    clip = str(root / splits["test"][0].path)
    with pytest.raises(PredictError, match="--overlap must be in"):
        _predict(
            [clip, "--model", str(checkpoint), "--overlap", "1.0", "--out", str(tmp_path / "o")]
        )
    with pytest.raises(MissingInputError, match="no model at"):
        _predict([clip, "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="needs the tracking URI of its store"):
        load_model("models:/audioclf-tiny/1")  # a model URI, and no store to look it up in
    with pytest.raises(UserError, match="--top-k must be >= 1"):
        _predict([clip, "--model", str(checkpoint), "--top-k", "0"])


def test_the_onnxruntime_backend_gives_torchs_answer(trained, tmp_path):
    checkpoint, root, splits = trained
    files = [str(root / e.path) for e in splits["test"][:5]]
    args = ["--model", str(checkpoint), "--top-k", "3", "--overlap", "0.25"]
    _predict([*files, *args, "--out", str(tmp_path / "torch")])
    _predict([*files, *args, "--out", str(tmp_path / "ort"), "--backend", "onnxruntime"])
    want, got = _rows(tmp_path / "torch" / "windows.csv"), _rows(tmp_path / "ort" / "windows.csv")
    assert len(got) == len(want) == 5 * 3  # one whole 1-s window per 1-s clip, top 3
    for w, g in zip(want, got, strict=True):
        assert (g["file"], g["start_s"], g["end_s"], g["label"], g["rank"], g["fill"]) == (
            w["file"], w["start_s"], w["end_s"], w["label"], w["rank"], w["fill"]
        )  # fmt: skip
        assert abs(float(g["score"]) - float(w["score"])) <= 2e-6


def test_the_default_min_score_writes_detections_not_every_window(trained, tmp_path):
    checkpoint, _, _ = trained
    recording, planted = _planted(trained, tmp_path)
    out = tmp_path / "out"
    predict.main([str(recording), "--model", str(checkpoint), "--out", str(out)])
    rows = _rows(out / "windows.csv")
    found = {round(float(r["start_s"])): r["label"] for r in rows}
    # 180 windows, of which the quiet noise between the planted calls gives no detection
    assert rows and all(float(r["score"]) >= 0.5 for r in rows)
    assert set(found) <= {k for k, _ in planted}
    assert sum(found.get(k) == label for k, label in planted) >= 1


def test_help_names_the_command_and_states_every_default(capsys):
    with pytest.raises(SystemExit):
        predict.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: audioclf predict ") and "--params" not in text
    for default in ("models", "data/split", "predictions", "0.0", "16", "0.5", "1", "per-file"):
        assert f"(default: {default})" in text, default


def test_progress_reaches_a_log_that_is_not_a_terminal(trained, tmp_path, caplog):
    checkpoint, root, splits = trained
    files = [str(root / e.path) for e in splits["test"][:3]]
    args = ["--model", str(checkpoint), "--out", str(tmp_path / "out"), "--progress-every", "0"]
    with caplog.at_level(logging.INFO, logger="audioclf.deploy.predict"):
        predict.main([*files, *args])
    lines = [r.getMessage() for r in caplog.records if "files (0 failed)" in r.getMessage()]
    assert [line.split(" files")[0] for line in lines] == [f"predict: {k}/3" for k in (1, 2, 3)]
    assert "audio-s" in lines[-1] and "ETA" in lines[-1]


def test_an_onnx_export_is_taken_as_the_model(trained, tmp_path):
    from audioclf.deploy.export import export_onnx

    checkpoint, root, splits = trained
    exported = tmp_path / "exported" / "model.onnx"
    export_onnx(load_model(checkpoint), exported, exported.with_suffix(".json"))
    files = [str(root / e.path) for e in splits["test"][:4]]
    _predict([*files, "--model", str(checkpoint), "--top-k", "2", "--out", str(tmp_path / "pt")])
    _predict([*files, "--model", str(exported), "--top-k", "2", "--out", str(tmp_path / "onnx")])
    torch_rows, onnx_rows = (
        _rows(tmp_path / "pt" / "windows.csv"),
        _rows(tmp_path / "onnx" / "windows.csv"),
    )
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert abs(float(a["score"]) - float(b["score"])) <= 1e-5
    exported.with_suffix(".json").unlink()
    with pytest.raises(MissingInputError, match="audioclf export --format onnx"):
        _predict([files[0], "--model", str(exported), "--out", str(tmp_path / "o")])


def test_raven_bands_stay_within_the_recordings_nyquist(trained, tmp_path):
    checkpoint, _, _ = trained
    t = np.arange(8000 * 3) / 8000
    narrow = tmp_path / "narrow.wav"  # 8 kHz: nothing above 4 kHz, whatever the model's rate
    sf.write(narrow, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    out = tmp_path / "out"
    _predict([str(narrow), "--model", str(checkpoint), "--out", str(out)])
    rows = _rows(out / "raven" / "narrow.selections.txt", delimiter="\t")
    assert rows and {r["High Freq (Hz)"] for r in rows} == {"4000.0"}


def test_a_model_uri_outside_the_project_leaves_no_store_behind(trained, tmp_path, monkeypatch):
    checkpoint, root, splits = trained
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    clip = str(root / splits["test"][0].path)
    with pytest.raises(MissingInputError, match="set MLFLOW_TRACKING_URI"):
        predict.main([clip, "--model", "models:/audioclf-tiny/1", "--out", str(tmp_path / "o")])
    assert list(elsewhere.iterdir()) == []
