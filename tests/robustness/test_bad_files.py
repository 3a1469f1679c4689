"""One bad file never stops a stage; no non-finite value is ever stored; temporaries of killed runs
are cleaned; files left out at download count against coverage."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audioclf.config.features import FeaturesConfig
from audioclf.data.audit import audit_folds
from audioclf.data.manifest import describe
from audioclf.features.extract import extract_features
from audioclf.features.table import FeatureTable
from audioclf.io import atomic_path

CFG = FeaturesConfig(
    kind="logmel",
    sample_rate=8000,
    n_fft=256,
    hop_length=128,
    n_mels=16,
    n_mfcc=13,
    segment_seconds=0.5,
)


def _wav(path, samples, sr=8000, subtype="PCM_16"):
    sf.write(path, np.asarray(samples, dtype=np.float32), sr, subtype=subtype)
    return path


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "audio"
    root.mkdir()
    files = {
        "good1.wav": _wav(root / "good1.wav", 0.1 * rng.standard_normal(8000)),
        "good2.wav": _wav(root / "good2.wav", 0.1 * rng.standard_normal(8000)),
        "one_sample.wav": _wav(root / "one_sample.wav", [0.5], sr=48000),  # resamples to 0 samples
        "zero_frames.wav": _wav(root / "zero_frames.wav", np.zeros(0)),
        "huge.wav": _wav(root / "huge.wav", 1e30 * rng.standard_normal(8000), subtype="FLOAT"),
        "silent_a.wav": _wav(root / "silent_a.wav", np.zeros(8000)),
        "silent_b.wav": _wav(root / "silent_b.wav", np.zeros(8000)),
    }
    entries = [describe(p, root, label=name[:4], group=name) for name, p in files.items()]
    return root, entries


def test_features_skip_each_bad_file_with_its_reason_and_store_nothing_non_finite(folder, tmp_path):
    root, entries = folder
    cfg = FeaturesConfig(**{**CFG.__dict__, "sample_rate": 4000, "min_coverage": 0.2})
    report = extract_features(entries, root, cfg, tmp_path / "out", store_dir=tmp_path / "store")
    reasons = {f["path"]: f["reason"] for f in report["failed"]}
    assert reasons["one_sample.wav"].startswith("empty: 1 samples at 48000 Hz resample to none")
    assert reasons["zero_frames.wav"].startswith("empty")
    assert reasons["huge.wav"].startswith("non-finite features")
    assert reasons["silent_a.wav"].startswith("silent")
    table = FeatureTable(tmp_path / "out")
    assert sorted({r.path for r in table.rows}) == ["good1.wav", "good2.wav"]
    assert np.isfinite(np.asarray(table.data)).all()
    # nothing non-finite in the store either: a rerun reuses only the good entries
    again = extract_features(entries, root, cfg, tmp_path / "out2", store_dir=tmp_path / "store")
    assert again["reused"] == 2 and again["failed"] == report["failed"]


def test_files_left_out_at_download_count_against_coverage(folder, tmp_path):
    root, entries = folder
    good = [e for e in entries if e.path.startswith("good")]
    dropped = [{"path": f"lost{i}.wav", "reason": "cannot read audio header"} for i in range(6)]
    cfg = FeaturesConfig(**{**CFG.__dict__, "min_coverage": 0.5})
    from audioclf.features.extract import CoverageError

    with pytest.raises(CoverageError) as err:
        extract_features(
            good, root, cfg, tmp_path / "out", store_dir=tmp_path / "store", dropped=dropped
        )
    assert err.value.report["files"] == 8 and err.value.report["coverage"] == 0.25
    assert "left out at download: cannot read audio header" in str(err.value.report["failed"])


def test_the_audit_goes_on_past_bad_files_and_silence_is_not_leakage(folder):
    root, entries = folder
    by_name = {e.path: e for e in entries}
    fold = {
        "train": [by_name[n] for n in ("good1.wav", "silent_a.wav", "zero_frames.wav")],
        "val": [by_name["one_sample.wav"]],
        "test": [by_name[n] for n in ("good2.wav", "silent_b.wav")],
    }
    report = audit_folds([fold], root)
    assert report["ok"] and report["checks"]["exact"]["count"] == 0
    not_audited = {f["path"]: f["reason"] for f in report["not_audited"]}
    assert "silent" in not_audited["silent_a.wav"] and "empty" in not_audited["zero_frames.wav"]


def test_the_audit_memory_is_bounded_by_its_cap_not_the_file(tmp_path):
    from audioclf.data.fingerprint import FP_RATE, decode_for_audit

    path = _wav(tmp_path / "long.wav", 0.1 * np.random.default_rng(1).standard_normal(8000 * 120))
    _, mono, sr = decode_for_audit(path, max_seconds=10.0)  # 10 s of 120, at the fingerprint's rate
    assert sr == FP_RATE and abs(len(mono) - 10 * FP_RATE) <= 2


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".raw.tmp-{pid}"
    stale.mkdir()
    (stale / "half.wav").write_bytes(b"half")
    alive = tmp_path / f".raw.tmp-{os.getppid()}"  # a writer that is still running: left alone
    alive.mkdir()
    with atomic_path(tmp_path / "raw") as tmp:
        tmp.mkdir()
    assert not stale.exists() and alive.exists() and (tmp_path / "raw").is_dir()


def test_a_folder_moved_aside_by_a_killed_writer_is_put_back(tmp_path):
    dead = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    (
        tmp_path / f".features.old-{dead}"
    ).mkdir()  # killed between moving the old output aside and the rename
    (tmp_path / f".features.old-{dead}" / "meta.json").write_text("{}")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "features"):
        raise RuntimeError("the next run fails too")
    assert (tmp_path / "features" / "meta.json").read_text() == "{}"
