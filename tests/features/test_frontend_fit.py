"""Does the front-end fit the data? Warnings on 8-kHz audio and 0.5-s clips, none where auto chose,
and the features stage: its report, and a model of the same front-end computing nothing."""

import importlib.util
import json

import numpy as np
import pytest
import soundfile as sf
import yaml
from tests.conftest import REPO, repo_params

from audioclf.config import parse_params
from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import Entry, describe, write_manifest
from audioclf.data.profile import data_profile
from audioclf.features.frontend_fit import fit_frontend, frontend_fit, segment_shares

DEFAULT = FeaturesConfig(kind="logmel")  # 22.05 kHz, 4-s segments, 128 mels up to 11 kHz


def entries(rate, durations):
    return [
        Entry(f"{i}.wav", "ab"[i % 2], f"g{i}", d, rate, 1, f"{i:064x}")
        for i, d in enumerate(durations)
    ]


def fit(cfg, es):
    return frontend_fit(cfg, data_profile(es), es)


def test_8khz_audio_under_the_default_front_end_is_flagged():
    es = entries(8000, [4.0] * 6)
    found = fit(DEFAULT, es)
    assert found["nyquist_hz"] == 4000 and found["band_top_hz"] == 11025
    # 38 of the 128 Slaney mel centres up to 11025 Hz lie above 4 kHz (the scale is log above 1 kHz)
    assert found["bands_above_nyquist"] == round(38 / 128, 4)
    assert len(found["warnings"]) == 2
    assert (
        "of the 128 bands lie above the median file's Nyquist frequency (4000 Hz"
        in (found["warnings"][0])
    )
    assert "features.sample_rate=auto" in found["warnings"][0]
    assert "band top (11025 Hz) is above" in found["warnings"][1]
    assert found["padding_share"] == 0  # the clips fill their segments


def test_half_second_clips_in_4s_segments_are_flagged():
    es = entries(22050, [0.5] * 6)
    found = fit(DEFAULT, es)
    assert found["padding_share"] == pytest.approx(0.875)  # 3.5 s of every 4-s segment
    assert found["files_shorter_than_segment"] == 1.0
    (warning,) = found["warnings"]
    assert warning.startswith("88% of the segments' samples are pad filler")
    assert "set features.segment_seconds=auto or about 0.5" in warning


def test_the_hand_fit_front_end_raises_nothing():
    es = entries(8000, [0.3, 0.4, 0.45, 0.5, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9])
    cfg = FeaturesConfig(
        kind="logmel", sample_rate=8000, n_fft=512, hop_length=128, n_mels=64, segment_seconds=1.0
    )
    found = fit(cfg, es)
    assert found["warnings"] == [] and found["bands_above_nyquist"] == 0
    assert found["padding_share"] == pytest.approx(1 - np.mean([d for d in [0.3, 0.4, 0.45, 0.5,
        0.5, 0.55, 0.6, 0.7, 0.8, 0.9]]))  # fmt: skip


def test_segments_drop_a_short_remainder():
    cfg = FeaturesConfig(kind="logmel", segment_seconds=4.0)
    padding, dropped, short = segment_shares(cfg, np.array([5.0, 6.0, 2.0]))
    # 5 s: one segment, 1 s dropped; 6 s: one, 2 s dropped; 2 s: one, padded by 2 s
    assert (padding, dropped, short) == pytest.approx((2 / 12, 3 / 13, 1 / 3))


def test_pretrained_front_ends_say_their_values_are_fixed():
    raw = repo_params()
    raw["model"] = "ast"
    raw["features"].update(REFERENCE)
    p = parse_params(raw)
    cfg, summary = fit_frontend(p.requested_features, p.features, entries(8000, [0.5] * 4), "ast")
    assert summary["kind"] == "fbank" and summary["requested_kind"] == "auto"
    assert summary["fixed"]["sample_rate"] == [22050, 16000]
    assert summary["fixed"]["n_fft"] == [2048, 400]
    warnings = summary["fit"]["warnings"]
    assert warnings and all("(fixed by features.kind=fbank" in w for w in warnings)


# the reference reports' front-end, fixed (params.yaml's defaults are auto)
REFERENCE = dict(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, segment_seconds=4.0)


def write_dataset(root, rate, seconds, n=8):
    """Two classes of tones, ``n`` files of ``seconds`` at ``rate``, and their manifest."""
    raw = root / "data/raw"
    raw.mkdir(parents=True)
    out = []
    for i in range(n):
        t = np.arange(int(seconds * rate)) / rate
        freq = (500 if i % 2 else 1500) + 10 * i  # every file its own audio
        sf.write(raw / f"{i}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
        out.append(describe(raw / f"{i}.wav", raw, f"tone{i % 2}", f"s{i}"))
    write_manifest(out, raw / "manifest.csv")
    return raw / "manifest.csv"


def features_stage(root, **features):
    """Run the features stage in ``root`` with params.yaml's defaults and ``features`` overrides."""
    raw = repo_params()
    model = features.pop("model", "cnn")
    raw["model"] = model
    raw["features"].update(store_dir=str(root / "store"), workers=1, **features)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    spec = importlib.util.spec_from_file_location("features_stage", REPO / "stages/features.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    report = stage.main(
        [
            *("--params", str(root / "params.yaml")),
            *("--manifest", str(root / "data/raw/manifest.csv")),
            *("--out", str(root / "data/features")),
            *("--report", str(root / "features.json")),
        ]
    )
    return report, json.loads((root / "features.json").read_text())


def test_the_stage_warns_on_8khz_half_second_clips_and_auto_fits_them(tmp_path, caplog):
    write_dataset(tmp_path, 8000, 0.5)
    with caplog.at_level("WARNING"):
        _, written = features_stage(tmp_path, **REFERENCE)
    warnings = written["frontend"]["fit"]["warnings"]
    assert len(warnings) == 3  # bands above Nyquist, band top, padding
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("does not fit the data" in m for m in logged) == 3
    _, written = features_stage(tmp_path)  # params.yaml's defaults: auto
    front = written["frontend"]
    assert front["auto"] == {
        "sample_rate": 8000,
        "n_fft": 512,
        "hop_length": 128,
        "n_mels": 64,
        "segment_seconds": 0.5,
    }
    assert front["fit"]["warnings"] == [] and set(front["rules"]) == set(front["auto"])


def test_a_model_of_the_same_front_end_computes_nothing(tmp_path):
    write_dataset(tmp_path, 16000, 1.0)
    first, _ = features_stage(tmp_path, model="cnn")
    again, written = features_stage(tmp_path, model="cnn_v2")  # the features stage reruns: reads
    assert first["computed"] == 8 and again["computed"] == 0 and again["reused"] == 8
    assert (
        written["frontend"]["kind"] == "logmel" and written["frontend_key"] == first["frontend_key"]
    )
    fbank, written = features_stage(tmp_path, model="ast")  # AST: its own front-end, its own key
    assert fbank["computed"] == 8 and written["frontend"]["kind"] == "fbank"
    back, _ = features_stage(tmp_path, model="cnn")
    assert back["computed"] == 0 and back["frontend_key"] == first["frontend_key"]
