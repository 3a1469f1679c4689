"""The feature benchmark runs end to end on a few files (its figures are printed, not asserted on speed)."""
from pathlib import Path

import pytest

from audioclf.benchmarks import features as bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_feature_benchmark_runs_all_phases(tmp_path):
    result = bench.main(["--files", "12", "--seconds", "1", "--rounds", "1", "--train-steps", "2",
                         "--dir", str(tmp_path), "--params", str(ROOT / "params.yaml")])
    for name in ("naive", "ours"):
        assert result[name]["files"] == 12
        assert result[name]["audio_s"] == pytest.approx(12.0)
        assert result[name]["audio_s_per_s"] > 0
    assert result["ratio_audio_s_per_s"] == pytest.approx(
        result["ours"]["audio_s_per_s"] / result["naive"]["audio_s_per_s"], rel=0.01)
    train = result["train"]
    assert train["steps"] >= 1 and 0 <= train["data_wait_share"] < 1
