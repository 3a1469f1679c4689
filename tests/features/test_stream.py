"""Streaming decode gives the samples the features stage decodes; windows start at k * hop exactly."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audioclf.features.audio import DecodeError, load_waveform, segment
from audioclf.features.stream import array_blocks, decoded_blocks, sliding_windows


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
@pytest.mark.parametrize("rate", [44100, 22050])
def test_blocks_equal_the_features_stages_decoding(tmp_path, subtype, rate):
    rng = np.random.default_rng(0)
    stereo = (0.3 * rng.standard_normal((int(7.3 * rate), 2))).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, stereo, rate, subtype=subtype)
    whole = load_waveform(path, 22050).samples
    streamed = np.concatenate(list(decoded_blocks(path, 22050, block_seconds=1.7)))
    assert streamed.shape == whole.shape
    # soxr in blocks equals soxr at once up to float32 rounding; without resampling, exactly
    np.testing.assert_allclose(streamed, whole, atol=0 if rate == 22050 else 2e-6)
    from_bytes = np.concatenate(list(decoded_blocks(path.read_bytes(), 22050)))
    np.testing.assert_array_equal(from_bytes, np.concatenate(list(decoded_blocks(path, 22050))))
    arrays = np.concatenate(list(array_blocks(sf.read(path, dtype="float32")[0], rate, 22050)))
    np.testing.assert_allclose(arrays, whole, atol=2e-6)


def test_undecodable_audio_raises_with_the_reason(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(DecodeError, match="unreadable"):
        list(decoded_blocks(tmp_path / "junk.wav", 16000))
    sf.write(tmp_path / "zero.wav", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(DecodeError, match="silent"):
        list(decoded_blocks(tmp_path / "zero.wav", 16000))
    with pytest.raises(DecodeError, match="non-finite"):
        list(array_blocks(np.array([0.1, np.nan, 0.2]), 16000, 16000))


def _stream(total: int, block: int):
    """A ramp (sample i holds i mod 1000003, exact in float32) in blocks of ``block`` samples."""
    for start in range(0, total, block):
        yield (np.arange(start, min(start + block, total)) % 1000003).astype(np.float32)


def test_windows_start_at_multiples_of_the_hop_over_an_hour_of_blocks():
    rate, n, hop = 16000, 16000, 12345
    total = 3600 * rate + 777
    k = -1
    for k, w in enumerate(sliding_windows(_stream(total, 480_000), n, hop)):
        assert w.start == k * hop
        expected = (np.arange(w.start, min(w.start + n, total)) % 1000003).astype(np.float32)
        np.testing.assert_array_equal(w.samples[: len(expected)], expected)
        if w.fill:
            assert w.stop == total and w.start + n > total and not w.samples[len(expected) :].any()
        else:
            assert w.stop == w.start + n
    assert k == 1 + (total - n) // hop and w.fill == "pad"  # the whole windows and one partial


@pytest.mark.parametrize("short", ["pad", "repeat"])
def test_a_short_recording_is_one_window_filled_as_training_fills_a_short_clip(short):
    clip = np.linspace(-1, 1, 700, dtype=np.float32)
    (w,) = sliding_windows(iter([clip[:300], clip[300:]]), 1000, 250, short)
    assert (w.start, w.stop, w.fill) == (0, 700, short)
    np.testing.assert_array_equal(w.samples, segment(clip, 1000, short=short)[0])


def test_windows_back_to_back_cover_the_recording_once():
    windows = list(sliding_windows(_stream(10_000, 999), 1000, 1000))
    assert [w.start for w in windows] == list(range(0, 10_000, 1000))
    assert not any(w.fill for w in windows)
