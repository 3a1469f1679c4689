import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.config import FeaturesConfig
from audioclf.features import DecodeError, FeatureStore, LogMel, extract_features, load_waveform, segment
from audioclf.manifest import Entry, describe

CFG = FeaturesConfig(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, f_min=0.0, segment_seconds=1.0)


def chirp(seconds=1.0, sr=22050, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * (500 + 3000 * t) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("f_min, f_max", [(0.0, None), (500.0, 8000.0)])
def test_logmel_matches_librosa(f_min, f_max):
    cfg = FeaturesConfig(**{**CFG.__dict__, "f_min": f_min, "f_max": f_max})
    wave = chirp()
    ours = LogMel(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    mel = librosa.feature.melspectrogram(y=wave, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                         n_mels=cfg.n_mels, fmin=f_min, fmax=f_max)
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db)
    assert ours.shape == ref.shape == (cfg.n_mels, cfg.n_frames)
    # float32 STFT vs librosa's: differences are rounding, far below a dB
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=0)


def test_batch_equals_items():
    logmel = LogMel(CFG)
    waves = torch.from_numpy(np.stack([chirp(seed=s) * (s + 1) / 3 for s in range(3)]))
    batch = logmel(waves)
    for i in range(3):
        torch.testing.assert_close(batch[i], logmel(waves[i:i + 1])[0], atol=1e-4, rtol=0)


def test_segment_pads_short_and_drops_remainder():
    assert segment(np.ones(10), 16).shape == (1, 16)
    segs = segment(np.arange(40.0), 16)
    assert segs.shape == (2, 16) and segs[1, 0] == 16


def test_load_waveform_downmixes_and_resamples(tmp_path):
    stereo = np.stack([chirp(sr=44100), chirp(sr=44100, seed=1)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 44100)
    wave = load_waveform(tmp_path / "s.wav", 22050)
    assert wave.ndim == 1 and abs(len(wave) - 22050) <= 1


@pytest.mark.parametrize("content, reason", [
    (b"not audio at all", "unreadable"),
    (None, "silent"),
    ("empty", "empty"),
])
def test_bad_audio_gives_reason(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    if content is None:
        sf.write(path, np.zeros(1000, dtype=np.float32), 22050)
    elif content == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 22050)
    else:
        path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        load_waveform(path, 22050)


def test_cache_records_failures_and_reads_back(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    entries = []
    for i in range(4):
        sf.write(root / f"ok{i}.wav", chirp(seconds=2.0, seed=i), 22050)
        entries.append(describe(root / f"ok{i}.wav", root, label=f"c{i % 2}", group=f"g{i}"))
    (root / "bad.wav").write_bytes(b"garbage")
    entries.append(Entry("bad.wav", "c0", "g9", 1.0, 22050, 1, "0" * 64))
    report = extract_features(entries, root, FeaturesConfig(**{**CFG.__dict__, "min_coverage": 0.5}), tmp_path / "cache")
    assert report["coverage"] == 0.8 and report["segments"] == 8
    assert report["failed"] == [{"path": "bad.wav", "reason": report["failed"][0]["reason"]}]
    assert report["failed"][0]["reason"].startswith("unreadable")
    store = FeatureStore(tmp_path / "cache")
    x, y, rows = store.select(["ok1.wav", "ok2.wav"])
    assert x.shape == (4, CFG.n_mels, CFG.n_frames) and list(y) == [1, 1, 0, 0]
    ref = LogMel(CFG)(torch.from_numpy(load_waveform(root / "ok1.wav", 22050)[:22050])[None])[0].numpy()
    np.testing.assert_allclose(x[0], ref, atol=1e-5)


def test_low_coverage_fails_and_publishes_nothing(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "bad.wav").write_bytes(b"garbage")
    sf.write(root / "ok.wav", chirp(), 22050)
    entries = [describe(root / "ok.wav", root, "a", "g"), Entry("bad.wav", "a", "g2", 1.0, 22050, 1, "0" * 64)]
    with pytest.raises(RuntimeError, match="below features.min_coverage=0.9.*bad.wav: unreadable"):
        extract_features(entries, root, CFG, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    assert not any(p.name.startswith(".cache") for p in tmp_path.iterdir())
