"""Decoding any audio file into the mono waveform a front-end sees, and cutting it into segments.

Decoding is done by libsndfile, which recognises a format by its content, so MP3
data inside a ``.wav`` still decodes (and is noted). What cannot be turned into a
usable waveform raises :class:`DecodeError` with the reason, which the features
stage records; nothing here stops a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import blake3
import numba
import numpy as np
import soundfile as sf
import soxr

# libsndfile major formats accepted for each file extension
EXPECTED_FORMATS = {".wav": {"WAV", "WAVEX", "RF64"}, ".flac": {"FLAC"}, ".ogg": {"OGG"}, ".mp3": {"MP3"},
                    ".aif": {"AIFF"}, ".aiff": {"AIFF"}, ".au": {"AU"}, ".caf": {"CAF"}, ".w64": {"W64"}}
# subtypes libsndfile converts to int16 exactly; reading them as int16 is ~10x faster than float32
INT16_SUBTYPES = {"PCM_16", "PCM_U8", "PCM_S8"}
EIGHT_BIT_SUBTYPES = {"PCM_U8", "PCM_S8"}
# a mono mix whose peak is below this is silent: for 16-bit (or coarser) audio it means every sample is 0
SILENCE_PEAK = 2.0 ** -16
# librosa.load's default resampler, so the features match a librosa reference end to end
RESAMPLE_QUALITY = "HQ"


class DecodeError(Exception):
    """A file that cannot be turned into a usable waveform; the message is the reason."""


@dataclass
class Waveform:
    """A decoded file: mono samples at the front-end's rate, and what was unusual about it.

    Attributes:
        samples: float32 array (N,).
        digest: BLAKE3 hex digest of ``samples`` (the decoded audio's identity in the feature
            store); BLAKE3 rather than sha256 because it hashes a clip ~3.5x faster (0.06 ms
            against 0.2 ms for 4 s at 22.05 kHz), a tenth of the features stage's work.
        notes: remarks worth reporting (8-bit, format/extension mismatch, truncation).
    """

    samples: np.ndarray
    digest: str
    notes: list[str] = field(default_factory=list)


def load_waveform(path: str | Path, sample_rate: int, *, max_seconds: float | None = None) -> Waveform:
    """Decode one file, down-mix it to mono and resample it to ``sample_rate``.

    Args:
        path: the audio file; its format is detected from the content, not the name.
        sample_rate: rate of the returned samples, in Hz.
        max_seconds: decode at most this many seconds (longer files are truncated, and
            noted), so one very long recording cannot exhaust memory.

    Returns:
        The :class:`Waveform`, samples of shape (N,).

    Raises:
        DecodeError: unreadable, empty, non-finite or silent audio, with the reason.
    """
    path = Path(path)
    notes = []
    try:
        with sf.SoundFile(str(path)) as fh:
            expected = EXPECTED_FORMATS.get(path.suffix.lower())
            if expected is not None and fh.format not in expected:
                notes.append(f"{fh.format} data in a {path.suffix} file")
            if fh.subtype in EIGHT_BIT_SUBTYPES:
                notes.append("8-bit PCM")
            frames = -1
            if max_seconds is not None and fh.frames > max_seconds * fh.samplerate:
                frames = int(max_seconds * fh.samplerate)
                notes.append(f"truncated to the first {max_seconds:g} s of {fh.frames / fh.samplerate:.1f} s")
            is_int = fh.subtype in INT16_SUBTYPES
            data = fh.read(frames, dtype="int16" if is_int else "float32", always_2d=True)  # (N, channels)
            rate = fh.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise DecodeError(f"unreadable: {exc}") from exc
    if data.size == 0:
        raise DecodeError("empty: no samples")
    scale = (1 / 32768 if is_int else 1.0) / data.shape[1]     # the down-mix is the channels' mean
    if is_int:
        mono = np.empty(len(data), dtype=np.float32)
        peak = _mix_int16(data.reshape(-1), data.shape[1], np.float32(scale), mono) * scale
    else:
        mono = _mix(data, scale)
        if not np.isfinite(mono).all():
            bad = int((~np.isfinite(data)).sum())
            raise DecodeError(f"non-finite: {bad} NaN or Inf samples")
        peak = max(mono.max(), -mono.min())
    if peak < SILENCE_PEAK:
        raise DecodeError("silent: every sample is zero" + (" after the down-mix" if data.shape[1] > 1 else ""))
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, RESAMPLE_QUALITY)
    return Waveform(mono, blake3.blake3(mono.view(np.uint8)).hexdigest(), notes)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _mix_int16(flat: np.ndarray, channels: int, scale: np.float32, out: np.ndarray) -> int:
    """Write ``scale`` times the sum of the channels of interleaved int16 ``flat`` (N * C,) to ``out`` (N,).

    One pass with no float copy of the input (the numpy route writes and reads one, 4x
    the file's samples in bytes): 0.04 ms against 0.14 ms for 4 s of 44.1 kHz stereo,
    peak included. Mono and stereo get loops of their own, which vectorise. Sums are
    exact integers; returns the largest absolute sum, so silence is a peak of exactly 0.
    """
    hi, lo = np.int32(0), np.int32(0)
    if channels == 1:
        for i in range(out.shape[0]):
            total = np.int32(flat[i])
            out[i] = np.float32(total) * scale
            hi, lo = max(hi, total), min(lo, total)
    elif channels == 2:
        for i in range(out.shape[0]):
            total = np.int32(flat[2 * i]) + np.int32(flat[2 * i + 1])
            out[i] = np.float32(total) * scale
            hi, lo = max(hi, total), min(lo, total)
    else:
        for i in range(out.shape[0]):
            total = np.int32(0)
            for c in range(channels):
                total += np.int32(flat[i * channels + c])
            out[i] = np.float32(total) * scale
            hi, lo = max(hi, total), min(lo, total)
    return max(hi, -lo)


def _mix(data: np.ndarray, scale: float) -> np.ndarray:
    """``scale`` times the sum of the channels (N, C) of float samples, as float32 (N,), in one pass.

    A matrix-vector product with a constant vector: ~30x faster than ``sum(axis=1)``
    over a short inner axis.
    """
    if data.shape[1] == 1:
        return np.multiply(data[:, 0], np.float32(scale), dtype=np.float32)
    return data.astype(np.float32, copy=False) @ np.full(data.shape[1], scale, dtype=np.float32)


def segment(wave: np.ndarray, n: int, hop: int | None = None, short: str = "pad") -> np.ndarray:
    """Cut a waveform into segments of ``n`` samples starting every ``hop`` samples.

    A clip shorter than one segment gives one segment, zero-padded (``short="pad"``)
    or repeated end to end (``short="repeat"``); a trailing remainder shorter than a
    segment is dropped.

    Args:
        wave: samples (N,).
        n: segment length in samples.
        hop: samples between segment starts; ``None`` means ``n`` (no overlap).
        short: ``"pad"`` or ``"repeat"``.

    Returns:
        Contiguous array (S, n), S = 1 + (N - n) // hop >= 1; segment k starts at k * hop.

    >>> segment(np.arange(5.0), 4, 1).tolist()
    [[0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]]
    >>> segment(np.arange(3.0), 4, short="repeat").tolist()
    [[0.0, 1.0, 2.0, 0.0]]
    """
    if n < 1:
        raise ValueError(f"segment length must be positive, got {n}")
    hop = n if hop is None else hop
    if hop < 1:
        raise ValueError(f"hop must be positive, got {hop}")
    if len(wave) == 0:
        raise ValueError("cannot segment an empty waveform")
    if len(wave) < n:
        if short == "pad":
            return np.pad(wave, (0, n - len(wave)))[None]
        if short == "repeat":
            return np.resize(wave, n)[None]
        raise ValueError(f"short must be 'pad' or 'repeat', got {short!r}")
    if hop == n:                                   # back to back: a view, nothing copied
        return wave[:(len(wave) // n) * n].reshape(-1, n)
    return np.lib.stride_tricks.sliding_window_view(wave, n)[::hop].copy()
