"""The feature benchmark compares like with like: both sides see every file, and ours computes what the
naive librosa loop computes (its speed figures are printed, never asserted)."""

from pathlib import Path

import librosa
import numpy as np
import pytest

from audioclf.config.features import FeaturesConfig
from audioclf.devtools import feature_benchmark as bench
from audioclf.features.table import FeatureTable

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_both_sides_process_the_same_audio_into_the_same_features(tmp_path):
    result = bench.main(
        [
            "--files",
            "12",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--train-steps",
            "2",
            "--dir",
            str(tmp_path),
            "--params",
            str(ROOT / "params.yaml"),
        ]
    )
    assert result["naive"]["files"] == result["ours"]["files"] == 12
    assert result["naive"]["audio_s"] == result["ours"]["audio_s"] == pytest.approx(12.0)
    table = FeatureTable(tmp_path / "work0" / "features")
    assert sorted({r.path for r in table.rows}) == [f"clip{i:05d}.wav" for i in range(12)]
    cfg = FeaturesConfig(kind="logmel")
    y, sr = librosa.load(tmp_path / "audio" / "clip00003.wav", sr=cfg.sample_rate)
    y = np.pad(y, (0, cfg.segment_samples - len(y)))  # the 1-s clip padded to one 4-s segment
    naive = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels
        ),
        top_db=cfg.top_db,
    )
    ours = table.data[table.indices(["clip00003.wav"])][0, 0]
    assert ours.shape == naive.shape
    np.testing.assert_allclose(ours, naive, atol=0.05)  # dB; float32 rounding of two FFT paths
    assert (
        result["train"]["steps"] >= 1 and 0 <= result["train"]["data_wait_share"] < 1
    )  # 12 segments: one batch
