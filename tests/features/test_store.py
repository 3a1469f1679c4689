"""The content-addressed segment store: keys, commits, and what an interruption leaves."""

import dataclasses
import os
import socket

import numpy as np
import pytest

from audioclf.config.features import FeaturesConfig
from audioclf.config.schema import ParamsError
from audioclf.features.shards import ShardWriter
from audioclf.features.store import FeatureStore, frontend_key

SHAPE = (1, 4, 5)


def feats(rows, value):
    return np.full((rows, *SHAPE), value, dtype=np.float32)


def test_key_follows_the_params_that_shape_features_only():
    base = FeaturesConfig(kind="logmel")
    same = [
        dataclasses.replace(base, **kw)
        for kw in (
            {"batch_size": 4},
            {"workers": 1},
            {"device": "cpu"},
            {"store_dir": "elsewhere"},
            {"min_coverage": 0.1},
            {"n_mfcc": 13},
            {"image_size": 224},
            {"embedding_pool": "none"},
        )
    ]  # n_mfcc, image_size and embedding_pool are unused by logmel
    other = [
        dataclasses.replace(base, **kw)
        for kw in (
            {"n_mels": 64},
            {"f_min": 500.0},
            {"kind": "mfcc"},
            {"segment_hop_seconds": 1.0},
            {"short_clips": "repeat"},
            {"sample_rate": 16000, "n_fft": 1024},
        )
    ]
    assert {frontend_key(c) for c in same} == {frontend_key(base)}
    assert len({frontend_key(c) for c in other} | {frontend_key(base)}) == len(other) + 1
    assert frontend_key(base).startswith("logmel-")
    # the default log-mel's key is fixed: a change to it is a change of FRONTEND_VERSION or params
    assert frontend_key(base) == "logmel-2be73ef6f00a0eeb"


def test_each_kind_keys_only_the_params_that_shape_it():
    fbank = FeaturesConfig(kind="fbank", sample_rate=16000, n_fft=400, hop_length=160)
    assert frontend_key(fbank) == frontend_key(dataclasses.replace(fbank, top_db=60.0))
    assert frontend_key(fbank) != frontend_key(dataclasses.replace(fbank, segment_seconds=2.0))
    image = FeaturesConfig(kind="imagenet")
    assert frontend_key(image) != frontend_key(dataclasses.replace(image, image_size=224))
    assert frontend_key(image) != frontend_key(FeaturesConfig(kind="logmel"))  # its own folder
    birdnet = FeaturesConfig(kind="birdnet", sample_rate=48000, segment_seconds=3.0)
    assert frontend_key(birdnet) == frontend_key(dataclasses.replace(birdnet, n_mels=64))
    assert frontend_key(birdnet) != frontend_key(
        dataclasses.replace(birdnet, embedding_pool="none")
    )
    with pytest.raises(ParamsError, match="still holds auto values"):
        frontend_key(FeaturesConfig())  # kind auto: no features yet


def test_committed_entries_read_back_in_a_new_store(tmp_path):
    store = FeatureStore(tmp_path, "k", SHAPE)
    with ShardWriter(store) as w:
        a = w.add(feats(2, 1.0), audio_hash="a", file_sha256="fa", notes=["8-bit PCM"])
        w.add(feats(3, 2.0), audio_hash="b", file_sha256="fb")
    again = FeatureStore(tmp_path, "k", SHAPE)
    assert (
        len(again) == 2 and again.by_file["fa"] == a and again.by_audio["a"].notes == ("8-bit PCM",)
    )
    np.testing.assert_array_equal(again.read(again.by_audio["b"]), feats(3, 2.0))
    with open(tmp_path / "out.f32", "wb", buffering=0) as fh:
        assert again.copy_to([again.by_audio["b"], again.by_audio["a"]], fh) == 5
    out = np.fromfile(tmp_path / "out.f32", dtype=np.float32).reshape(5, *SHAPE)
    np.testing.assert_array_equal(out, np.concatenate([feats(3, 2.0), feats(2, 1.0)]))


def test_a_failed_commit_publishes_nothing_and_leaves_no_temporary_shard(tmp_path, monkeypatch):

    def fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    store = FeatureStore(tmp_path, "k", SHAPE)
    with pytest.raises(OSError, match="Input/output error"):
        with ShardWriter(store) as w:
            w.add(feats(1, 1.0), audio_hash="a", file_sha256="fa")
    assert len(FeatureStore(tmp_path, "k", SHAPE)) == 0 and list((tmp_path / "k").iterdir()) == []


def test_an_exception_discards_the_uncommitted_shard(tmp_path):
    store = FeatureStore(tmp_path, "k", SHAPE)
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(store) as w:
            w.add(feats(2, 1.0), audio_hash="a", file_sha256="fa")
            raise KeyboardInterrupt
    assert len(FeatureStore(tmp_path, "k", SHAPE)) == 0
    assert list((tmp_path / "k").iterdir()) == []


def test_full_shards_are_committed_and_survive_a_later_failure(tmp_path):
    store = FeatureStore(tmp_path, "k", SHAPE)
    with pytest.raises(RuntimeError):
        with ShardWriter(store, shard_bytes=2 * 4 * np.prod(SHAPE)) as w:  # a shard holds two rows
            w.add(feats(2, 1.0), audio_hash="a", file_sha256="fa")  # fills a shard: committed
            w.add(feats(1, 2.0), audio_hash="b", file_sha256="fb")
            raise RuntimeError("killed")
    again = FeatureStore(tmp_path, "k", SHAPE)
    assert list(again.by_audio) == ["a"]
    np.testing.assert_array_equal(again.read(again.by_audio["a"]), feats(2, 1.0))


def test_a_hard_kill_leaves_nothing_taken_for_complete(tmp_path):
    folder = tmp_path / "k"
    folder.mkdir()
    host = socket.gethostname()
    # killed while writing data, and between the data's rename and the index's
    dead = [
        f".20250101T000000-{host}-999999999-abcd.f32.tmp",
        f"20250101T000000-{host}-999999999-ef.f32",
    ]
    for name in dead:
        (folder / name).write_bytes(b"\0" * 80)
    other_host = "20250101T000000-elsewhere-1-ef.f32"  # not ours to judge: ignored, kept
    (folder / other_host).write_bytes(b"\0" * 80)
    # a writer still running on this host: its temporary file is left alone
    live = f".20250101T000000-{host}-{os.getpid()}-abcd.f32.tmp"
    (folder / live).write_bytes(b"")
    store = FeatureStore(tmp_path, "k", SHAPE)
    assert len(store) == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted([live, other_host])


def test_an_index_whose_data_is_short_is_ignored(tmp_path):
    store = FeatureStore(tmp_path, "k", SHAPE)
    with ShardWriter(store) as w:
        entry = w.add(feats(3, 1.0), audio_hash="a", file_sha256="fa")
    data = tmp_path / "k" / f"{entry.shard}.f32"
    data.write_bytes(data.read_bytes()[:100])
    assert len(FeatureStore(tmp_path, "k", SHAPE)) == 0


def test_add_checks_shape_and_dtype(tmp_path):
    with ShardWriter(FeatureStore(tmp_path, "k", SHAPE)) as w:
        with pytest.raises(
            ValueError, match=r"float32 \(rows, 1, 4, 5\), got float64 \(2, 1, 4, 5\)"
        ):
            w.add(np.zeros((2, *SHAPE)), audio_hash="a", file_sha256="fa")
