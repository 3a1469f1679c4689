"""The features stage's library function: store hits and misses, interruptions, bad audio."""

import dataclasses
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

import audioclf.features.extract as extract_module
import audioclf.features.workers as workers_module
from audioclf.config import ParamsError
from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import Entry, describe
from audioclf.features.audio import load_waveform
from audioclf.features.extract import CoverageError, extract_features
from audioclf.features.frontends import FrontEnd
from audioclf.features.store import FeatureStore, frontend_key
from audioclf.features.table import FeatureTable

CFG = FeaturesConfig(
    kind="logmel",
    sample_rate=16000,
    n_fft=512,
    hop_length=256,
    n_mels=32,
    segment_seconds=1.0,
    workers=2,
    device="cpu",
    min_coverage=0.5,
)


def chirp(seconds, sr=16000, seed=0, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * (300 + 2000 * t / seconds + 100 * seed) * t)[:, None]
    x = x + 0.05 * rng.standard_normal((len(t), channels))
    return x.astype(np.float32)


@pytest.fixture
def dataset(tmp_path):
    """Six good files (44.1 kHz stereo, 16 kHz mono, one 2.5 s long) in two groups, and their manifest."""
    root = tmp_path / "raw"
    root.mkdir()
    entries = []
    for i in range(6):
        sr, ch = (44100, 2) if i % 2 else (16000, 1)
        sf.write(
            root / f"f{i}.wav",
            chirp(2.5 if i == 0 else 1.2, sr, seed=i, channels=ch),
            sr,
            subtype="PCM_16",
        )
        entries.append(describe(root / f"f{i}.wav", root, label=f"c{i % 3}", group=f"g{i // 3}"))
    return root, entries


def run(dataset, tmp_path, cfg=CFG, name="out", **kw):
    root, entries = dataset
    return extract_features(entries, root, cfg, tmp_path / name, store_dir=tmp_path / "store", **kw)


def test_cache_matches_the_frontend_and_carries_group_and_source(dataset, tmp_path):
    cfg = dataclasses.replace(CFG, segment_hop_seconds=0.5)
    report = run(dataset, tmp_path, cfg)
    assert report["computed"] == 6 and report["reused"] == 0 and report["coverage"] == 1.0
    store = FeatureTable(tmp_path / "out")
    # f0: 2.5 s -> segments at 0, 0.5, 1.0, 1.5 s; the others (1.2 s): one each
    assert report["segments"] == len(store.rows) == 4 + 5
    assert [(r.path, r.group, r.segment, r.start_s) for r in store.rows[:4]] == [
        ("f0.wav", "g0", k, k * 0.5) for k in range(4)
    ]
    assert store.in_channels == 1 and store.data.shape == (9, 1, 32, cfg.n_frames)
    wave = load_waveform(dataset[0] / "f1.wav", 16000).samples[:16000]
    ref = FrontEnd(cfg)(torch.from_numpy(wave)[None])[0].numpy()  # (1, 32, T)
    x, y, rows = store.select(["f1.wav"])
    assert [r.path for r in rows] == ["f1.wav"] and list(y) == [1]
    np.testing.assert_allclose(x[0], ref, atol=1e-4)


def test_rerun_is_a_store_hit_and_a_new_frontend_a_miss(dataset, tmp_path):
    first = run(dataset, tmp_path, name="a")
    again = run(
        dataset,
        tmp_path,
        dataclasses.replace(CFG, batch_size=3, workers=1, min_coverage=0.9),
        name="b",
    )
    assert (again["computed"], again["reused"]) == (0, 6)
    for f in ("features.f32", "index.csv", "meta.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    other = run(dataset, tmp_path, dataclasses.replace(CFG, n_mels=24), name="c")
    assert (other["computed"], other["reused"]) == (6, 0) and first["frontend_key"] != other[
        "frontend_key"
    ]
    assert len(list((tmp_path / "store").iterdir())) == 2  # one folder per front-end


def test_same_audio_in_another_file_is_shared(dataset, tmp_path):
    root, entries = dataset
    pcm, sr = sf.read(root / "f2.wav", dtype="int16")
    sf.write(root / "copy.flac", pcm, sr, subtype="PCM_16")  # new bytes, same audio
    entries = [*entries, describe(root / "copy.flac", root, label="c2", group="g9")]
    report = extract_features(entries, root, CFG, tmp_path / "out", store_dir=tmp_path / "store")
    assert (report["computed"], report["reused"]) == (6, 1)
    x, _, _ = FeatureTable(tmp_path / "out").select(["f2.wav", "copy.flac"])
    np.testing.assert_array_equal(x[0], x[1])


def test_mfcc_cache_has_three_channels(dataset, tmp_path):
    run(dataset, tmp_path, dataclasses.replace(CFG, kind="mfcc", n_mfcc=13))
    store = FeatureTable(tmp_path / "out")
    assert store.in_channels == 3 and store.data.shape[1:] == (3, 13, CFG.n_frames)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["frontend"]["n_mfcc"] == 13


@pytest.mark.parametrize("shard_bytes", [256 << 20, 1])
def test_an_interrupted_extraction_leaves_no_entry_taken_for_complete(
    dataset, tmp_path, monkeypatch, shard_bytes
):
    calls = {"n": 0}
    real = workers_module.transform

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the CPU front-end runs once per file here: four files are done
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(workers_module, "transform", failing)
    # each file's result reaches the writer on its own
    monkeypatch.setattr(extract_module, "FILES_PER_TASK", 1)
    with pytest.raises(KeyboardInterrupt):
        run(dataset, tmp_path, dataclasses.replace(CFG, workers=1), shard_bytes=shard_bytes)
    assert not (tmp_path / "out").exists()
    folder = tmp_path / "store" / frontend_key(CFG)
    assert not list(folder.glob(".*.tmp"))
    store = FeatureStore(tmp_path / "store", frontend_key(CFG), CFG.shape)
    # a large shard was never committed; one-row shards were, each complete, before the failure
    assert len(store) == (0 if shard_bytes > 1 else 4)
    monkeypatch.setattr(workers_module, "transform", real)
    resumed = run(dataset, tmp_path, shard_bytes=shard_bytes)
    assert resumed["computed"] == 6 - len(store)
    clean = extract_features(
        dataset[1], dataset[0], CFG, tmp_path / "clean", store_dir=tmp_path / "fresh"
    )
    assert clean["computed"] == 6
    assert (tmp_path / "out" / "features.f32").read_bytes() == (
        tmp_path / "clean" / "features.f32"
    ).read_bytes()


def test_a_failed_last_commit_publishes_nothing(dataset, tmp_path, monkeypatch):
    """The last shard's commit fails (its fsync): no entry and no output appears."""

    def fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        run(dataset, tmp_path)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == [
        "raw",
        "store",
    ]
    assert list((tmp_path / "store" / frontend_key(CFG)).iterdir()) == []
    monkeypatch.undo()
    assert run(dataset, tmp_path)["computed"] == 6


def test_bad_audio_is_skipped_or_decoded_with_reasons(dataset, tmp_path):
    root, entries = dataset
    x = chirp(1.2, 16000, seed=9)[:, 0]
    (root / "garbage.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(root / "zeros.wav", np.zeros(16000, np.float32), 16000)
    nan = x.copy()
    nan[5] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "u8.wav", x, 16000, subtype="PCM_U8")
    sf.write(root / "stereo.wav", np.stack([x, 0.5 * x], axis=1), 44100, subtype="PCM_24")
    sf.write(root / "long.flac", chirp(4.0, 8000, seed=3), 8000)
    sf.write(root / "song.mp3", x, 16000, format="MP3")
    (root / "mp3.wav").write_bytes((root / "song.mp3").read_bytes())
    names = [
        "garbage.wav",
        "empty.wav",
        "zeros.wav",
        "nan.wav",
        "u8.wav",
        "stereo.wav",
        "long.flac",
        "mp3.wav",
    ]
    bad = [Entry(n, "c0", f"b{i}", 1.0, 16000, 1, f"{i:064d}") for i, n in enumerate(names)]
    cfg = dataclasses.replace(CFG, max_file_seconds=2.0)
    report = extract_features(
        entries + bad, root, cfg, tmp_path / "out", store_dir=tmp_path / "store"
    )
    reasons = {f["path"]: f["reason"].split(":")[0] for f in report["failed"]}
    assert reasons == {
        "garbage.wav": "unreadable",
        "empty.wav": "empty",
        "zeros.wav": "silent",
        "nan.wav": "non-finite",
    }
    assert report["coverage"] == pytest.approx(10 / 14, abs=1e-6)
    notes = {n["path"]: n["note"] for n in report["notes"]}
    assert notes == {
        "u8.wav": "8-bit PCM",
        "long.flac": "truncated to the first 2 s of 4.0 s",
        "mp3.wav": "MP3 data in a .wav file",
        "f0.wav": "truncated to the first 2 s of 2.5 s",
    }
    store = FeatureTable(tmp_path / "out")
    assert {r.path for r in store.rows} >= {"u8.wav", "stereo.wav", "long.flac", "mp3.wav"}
    assert sum(r.path == "long.flac" for r in store.rows) == 2
    assert np.isfinite(store.data).all()


def test_low_coverage_fails_and_publishes_nothing(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "bad.wav").write_bytes(b"garbage")
    sf.write(root / "ok.wav", chirp(1.0)[:, 0], 16000)
    entries = [
        describe(root / "ok.wav", root, "a", "g"),
        Entry("bad.wav", "a", "g2", 1.0, 16000, 1, "0" * 64),
    ]
    with pytest.raises(
        CoverageError, match="below features.min_coverage=0.9.*bad.wav: unreadable"
    ) as info:
        extract_features(
            entries,
            root,
            dataclasses.replace(CFG, min_coverage=0.9),
            tmp_path / "cache",
            store_dir=tmp_path / "store",
        )
    assert info.value.report["coverage"] == 0.5
    assert not (tmp_path / "cache").exists()
    assert not any(p.name.startswith(".cache") for p in tmp_path.iterdir())


def test_cuda_requested_without_a_gpu_names_the_param(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ParamsError, match="'features.device' is 'cuda' but torch sees no CUDA device"
    ):
        run(dataset, tmp_path, dataclasses.replace(CFG, device="cuda"))


@pytest.mark.gpu
def test_gpu_extraction_equals_cpu(dataset, tmp_path):
    run(dataset, tmp_path, name="cpu")
    # a store of its own, or the GPU run would reuse the CPU run's entries
    extract_features(
        dataset[1],
        dataset[0],
        dataclasses.replace(CFG, device="cuda", batch_size=3),
        tmp_path / "gpu",
        store_dir=tmp_path / "gpu_store",
    )
    cpu, gpu = FeatureTable(tmp_path / "cpu"), FeatureTable(tmp_path / "gpu")
    assert cpu.rows == gpu.rows
    np.testing.assert_allclose(np.asarray(gpu.data), np.asarray(cpu.data), atol=1e-2)


def test_an_output_of_stored_entries_is_their_rows_in_manifest_order(dataset, tmp_path):
    root, entries = dataset
    run(dataset, tmp_path)
    full = np.fromfile(tmp_path / "out" / "features.f32", dtype=np.float32)
    part = extract_features(
        entries[2:4], root, CFG, tmp_path / "part", store_dir=tmp_path / "store"
    )
    assert part["computed"] == 0
    per_row = full.size // len(FeatureTable(tmp_path / "out").rows)
    np.testing.assert_array_equal(
        np.fromfile(tmp_path / "part" / "features.f32", dtype=np.float32),
        full[3 * per_row : 5 * per_row],
    )  # f0: 2 rows, then f1 and f2 one each
