"""Decoding every kind of file we have met, and segmentation."""

import librosa
import numpy as np
import pytest
import soundfile as sf

from audioclf.features.audio import DecodeError, load_waveform, segment


def tone(seconds=1.0, sr=22050, freq=440.0, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t)[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    return x.astype(np.float32) if channels > 1 else x[:, 0].astype(np.float32)


def test_stereo_44k_matches_librosa_load(tmp_path):
    sf.write(tmp_path / "s.wav", tone(sr=44100, channels=2), 44100, subtype="PCM_16")
    wave = load_waveform(tmp_path / "s.wav", 22050)
    ref, _ = librosa.load(tmp_path / "s.wav", sr=22050)  # mean of channels, then soxr_hq
    assert wave.samples.dtype == np.float32 and wave.samples.shape == ref.shape
    np.testing.assert_allclose(wave.samples, ref, atol=1e-6)
    assert wave.notes == [] and len(wave.digest) == 64


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_16_bit_down_mix_is_librosas_mean(tmp_path, channels):
    """The down-mix at the native rate (no resampling), mono, stereo and more channels."""
    sf.write(tmp_path / "m.wav", tone(channels=channels, seed=channels), 22050, subtype="PCM_16")
    ref, _ = librosa.load(tmp_path / "m.wav", sr=None)
    np.testing.assert_allclose(
        load_waveform(tmp_path / "m.wav", 22050).samples, ref, rtol=1e-6, atol=0
    )


def test_one_nonzero_sample_is_not_silence(tmp_path):
    pcm = np.zeros((1000, 2), dtype=np.int16)
    pcm[500, 1] = -1  # one LSB in one channel: a peak of 2**-16 after the mix
    sf.write(tmp_path / "faint.wav", pcm, 22050, subtype="PCM_16")
    wave = load_waveform(tmp_path / "faint.wav", 22050)
    assert np.flatnonzero(wave.samples).tolist() == [500] and wave.samples[500] == -(2.0**-16)


PCM = (tone(seconds=0.5, channels=2, seed=3) * 20000).astype(np.int16)


@pytest.mark.parametrize(
    "name, make",
    [
        ("24-bit", lambda p: sf.write(p, PCM, 22050, subtype="PCM_24")),
        ("float", lambda p: sf.write(p, PCM / 32768, 22050, subtype="FLOAT")),
        ("extensible header", lambda p: sf.write(p, PCM, 22050, subtype="PCM_16", format="WAVEX")),
    ],
)
def test_other_wav_encodings_decode_to_the_same_samples(tmp_path, name, make):
    make(tmp_path / "x.wav")
    sf.write(tmp_path / "plain.wav", PCM, 22050, subtype="PCM_16")
    np.testing.assert_array_equal(
        load_waveform(tmp_path / "x.wav", 22050).samples,
        load_waveform(tmp_path / "plain.wav", 22050).samples,
        err_msg=name,
    )


def test_same_audio_same_hash_whatever_the_container(tmp_path):
    x = (tone(sr=16000) * 20000).astype(
        np.int16
    )  # integers: libsndfile's float->int rounding differs by format
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", x, 16000, subtype="PCM_16")
    sf.write(tmp_path / "c.wav", x // 2, 16000, subtype="PCM_16")
    hashes = [load_waveform(tmp_path / n, 16000).digest for n in ("a.wav", "b.flac", "c.wav")]
    assert hashes[0] == hashes[1] != hashes[2]


def test_eight_bit_is_decoded_and_noted(tmp_path):
    sf.write(tmp_path / "u8.wav", tone(), 22050, subtype="PCM_U8")
    wave = load_waveform(tmp_path / "u8.wav", 22050)
    np.testing.assert_allclose(wave.samples, tone(), atol=2 / 256)  # 8-bit quantisation
    assert wave.notes == ["8-bit PCM"]


def test_mp3_inside_a_wav_is_decoded_and_noted(tmp_path):
    sf.write(tmp_path / "song.mp3", tone(sr=44100), 44100, format="MP3")
    (tmp_path / "song.wav").write_bytes((tmp_path / "song.mp3").read_bytes())
    wave = load_waveform(tmp_path / "song.wav", 22050)
    assert wave.notes == ["MP3 data in a .wav file"]
    assert abs(len(wave.samples) - 22050) < 2048  # MP3 adds encoder padding
    assert np.abs(wave.samples).max() > 0.2


def test_very_long_file_is_truncated_and_noted(tmp_path):
    sf.write(tmp_path / "long.flac", tone(seconds=5.0, sr=8000), 8000)
    wave = load_waveform(tmp_path / "long.flac", 8000, max_seconds=2.0)
    assert len(wave.samples) == 16000
    assert wave.notes == ["truncated to the first 2 s of 5.0 s"]


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("garbage", "unreadable"),
        ("empty", "empty: no samples"),
        ("zeros", "silent: every sample is zero"),
        ("cancelling", "silent: every sample is zero after the down-mix"),
        ("nan", "non-finite: 1 NaN or Inf samples"),
        ("inf", "non-finite: 2 NaN or Inf samples"),
        ("missing", "unreadable"),
    ],
)
def test_bad_audio_gives_reason(tmp_path, kind, reason):
    path = tmp_path / "bad.wav"
    x = tone()
    if kind == "garbage":
        path.write_bytes(b"RIFF not really a wave file")
    elif kind == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 22050)
    elif kind == "zeros":
        sf.write(path, np.zeros(1000, dtype=np.float32), 22050)
    elif kind == "cancelling":
        pcm = (x * 20000).astype(np.int16)
        sf.write(path, np.stack([pcm, -pcm], axis=1), 22050, subtype="PCM_16")
    elif kind in ("nan", "inf"):
        x[10] = np.nan if kind == "nan" else np.inf
        if kind == "inf":
            x[20] = -np.inf
        sf.write(path, x, 22050, subtype="FLOAT")
    with pytest.raises(DecodeError, match=reason):
        load_waveform(path, 22050)


def test_segment_back_to_back_drops_the_remainder():
    segs = segment(np.arange(40.0), 16)
    assert segs.shape == (2, 16) and segs[1, 0] == 16 and segs.flags.c_contiguous


def test_segment_with_hop_overlaps():
    segs = segment(np.arange(40.0), 16, hop=8)
    assert segs.shape == (4, 16) and [s[0] for s in segs] == [0, 8, 16, 24]


@pytest.mark.parametrize(
    "short, expected", [("pad", [1, 2, 3, 0, 0, 0, 0]), ("repeat", [1, 2, 3, 1, 2, 3, 1])]
)
def test_short_clip_padded_or_repeated(short, expected):
    assert segment(np.array([1.0, 2.0, 3.0]), 7, short=short).tolist() == [expected]


def test_segment_rejects_bad_arguments():
    with pytest.raises(ValueError, match="short must be 'pad' or 'repeat', got 'loop'"):
        segment(np.ones(3), 7, short="loop")
    with pytest.raises(ValueError, match="hop must be positive, got 0"):
        segment(np.ones(30), 7, hop=0)
