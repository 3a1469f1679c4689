"""Decoding any audio file into the mono waveform a front-end sees, and cutting it into segments.

libsndfile (through ``soundfile``) decodes; it recognises a format by its content, so MP3
data inside a ``.wav`` still decodes (and is noted). The channels are averaged and soxr
resamples, as ``librosa.load`` does. What cannot be turned into a usable waveform raises
:class:`DecodeError` with the reason, which the features stage records; nothing here stops
a run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# libsndfile major formats accepted for each file extension
EXPECTED_FORMATS = {
    ".wav": {"WAV", "WAVEX", "RF64"},
    ".flac": {"FLAC"},
    ".ogg": {"OGG"},
    ".mp3": {"MP3"},
    ".aif": {"AIFF"},
    ".aiff": {"AIFF"},
    ".au": {"AU"},
    ".caf": {"CAF"},
    ".w64": {"W64"},
}
# subtypes libsndfile converts to int16 exactly; read as int16 and scaled in numpy, they decode
# ~3x faster than through libsndfile's float conversion
INT16_SUBTYPES = {"PCM_16", "PCM_U8", "PCM_S8"}
EIGHT_BIT_SUBTYPES = {"PCM_U8", "PCM_S8"}
# a mono mix whose peak is below this is silent: for 16-bit (or coarser) audio it means every sample is 0
SILENCE_PEAK = 2.0**-16
# librosa.load's default resampler, so the features match a librosa reference end to end
RESAMPLE_QUALITY = "HQ"


class DecodeError(Exception):
    """A file that cannot be turned into a usable waveform; the message is the reason."""


@dataclass
class Waveform:
    """A decoded file: mono samples at the front-end's rate, and what was unusual about it.

    Attributes:
        samples: float32 array (N,).
        digest: sha256 hex digest of ``samples`` (the decoded audio's identity in the feature store).
        notes: remarks worth reporting (8-bit, format/extension mismatch, truncation).
    """

    samples: np.ndarray
    digest: str
    notes: list[str] = field(default_factory=list)


def load_waveform(
    path: str | Path, sample_rate: int, *, max_seconds: float | None = None
) -> Waveform:
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
    try:
        data, rate, notes = _read(path, max_seconds)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise DecodeError(f"unreadable: {exc}") from exc
    if data.size == 0:
        raise DecodeError("empty: no samples")
    mono = downmix(data)
    if not np.isfinite(mono).all():
        raise DecodeError(f"non-finite: {int((~np.isfinite(data)).sum())} NaN or Inf samples")
    if np.abs(mono).max() < SILENCE_PEAK:
        raise DecodeError(
            "silent: every sample is zero" + (" after the down-mix" if data.shape[1] > 1 else "")
        )
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality=RESAMPLE_QUALITY)
        if len(mono) == 0:
            raise DecodeError(
                f"empty: {len(data)} samples at {rate} Hz resample to none at {sample_rate} Hz"
            )
    return Waveform(mono, hashlib.sha256(mono).hexdigest(), notes)


def downmix(data: np.ndarray) -> np.ndarray:
    """The channels' mean of samples (N, C), int16 (scaled by 1 / 32768) or float: float32 (N,).

    The channels are added column by column: ``mean(axis=1)`` over so short an axis is ~15x
    slower, and holds the GIL the worker threads share.

    >>> downmix(np.array([[1.0, 0.0], [0.5, -0.5]], dtype=np.float32)).tolist()
    [0.5, 0.0]
    >>> downmix(np.array([[16384, -16384]], dtype=np.int16)).tolist()
    [0.0]
    """
    scale = np.float32((1 / 32768 if data.dtype == np.int16 else 1.0) / data.shape[1])
    mono = data[:, 0].astype(np.float32)
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    return np.multiply(mono, scale, out=mono)


def _read(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int, list[str]]:
    """Samples (N, C) (int16 where that is exact, else float32), their rate, and notes."""
    notes = []
    with sf.SoundFile(str(path)) as fh:
        expected = EXPECTED_FORMATS.get(path.suffix.lower())
        if expected is not None and fh.format not in expected:
            notes.append(f"{fh.format} data in a {path.suffix} file")
        if fh.subtype in EIGHT_BIT_SUBTYPES:
            notes.append("8-bit PCM")
        frames = -1
        if max_seconds is not None and fh.frames > max_seconds * fh.samplerate:
            notes.append(
                f"truncated to the first {max_seconds:g} s of {fh.frames / fh.samplerate:.1f} s"
            )
            frames = int(max_seconds * fh.samplerate)
        dtype = "int16" if fh.subtype in INT16_SUBTYPES else "float32"
        return fh.read(frames, dtype=dtype, always_2d=True), fh.samplerate, notes


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
    if hop == n:  # back to back: a view, nothing copied
        return wave[: (len(wave) // n) * n].reshape(-1, n)
    return np.lib.stride_tricks.sliding_window_view(wave, n)[::hop].copy()
