"""Streaming decode and sliding windows: recordings of any length at a flat memory cost.

The features stage decodes a whole clip at once (:func:`audioclf.features.audio.load_waveform`);
prediction over hours of field recordings reads the file in blocks instead, with the same
down-mix (:func:`~audioclf.features.audio.downmix`) and the same resampler (soxr at
:data:`~audioclf.features.audio.RESAMPLE_QUALITY`, one stream per file), and cuts the
samples into windows of a model's segment length as they arrive. Window ``k`` starts at
sample ``k * hop`` exactly, however long the file; samples after the last whole window make
one more window, filled as the features stage fills a clip shorter than a segment
(:func:`~audioclf.features.audio.segment`: ``pad`` or ``repeat``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audioclf.features.audio import (
    INT16_SUBTYPES,
    RESAMPLE_QUALITY,
    SILENCE_PEAK,
    DecodeError,
    downmix,
    segment,
)

BLOCK_SECONDS = 30.0  # decoded at a time: ~10 MB of 44.1 kHz stereo float32, whatever the length


@dataclass(frozen=True)
class Window:
    """One window of a recording: ``samples`` (n,) from sample ``start`` at the model's rate.

    ``stop`` is the last sample it covers plus one (``start + n``, or the recording's end for
    the last, partial window); ``fill`` is ``""`` for a whole window, else how the missing
    samples were made (``pad`` or ``repeat``).
    """

    start: int
    stop: int
    samples: np.ndarray
    fill: str = ""


def decoded_blocks(
    source: str | Path | bytes, sample_rate: int, block_seconds: float = BLOCK_SECONDS
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of an audio file (a path, or its bytes) at ``sample_rate``.

    Raises:
        DecodeError: unreadable, empty, non-finite or silent audio, with the reason (possibly
            after some blocks were yielded: a file damaged halfway is found there).
    """
    try:
        fh = sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise DecodeError(f"unreadable: {exc}") from exc
    with fh:
        frames = max(1, int(block_seconds * fh.samplerate))
        dtype = "int16" if fh.subtype in INT16_SUBTYPES else "float32"

        def native() -> Iterator[np.ndarray]:
            while True:
                try:
                    data = fh.read(frames, dtype=dtype, always_2d=True)  # (N, C)
                except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
                    raise DecodeError(f"unreadable: {exc}") from exc
                if not len(data):
                    return
                yield downmix(data)

        yield from checked(resampled(native(), fh.samplerate, sample_rate))


def array_blocks(
    samples: np.ndarray, rate: int, sample_rate: int, block_seconds: float = BLOCK_SECONDS
) -> Iterator[np.ndarray]:
    """:func:`decoded_blocks` of samples already in memory: (N,) mono or (N, C), at ``rate`` Hz."""
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or rate < 1:
        raise DecodeError(
            f"samples must be (N,) or (N, channels) at a positive rate, got {data.shape} at {rate} Hz"
        )
    frames = max(1, int(block_seconds * rate))
    mono = (downmix(data[i : i + frames]) for i in range(0, len(data), frames))
    return checked(resampled(mono, rate, sample_rate))


def resampled(blocks: Iterator[np.ndarray], rate: int, sample_rate: int) -> Iterator[np.ndarray]:
    """``blocks`` at ``rate`` Hz, resampled to ``sample_rate`` through one soxr stream."""
    if rate == sample_rate:
        yield from blocks
        return
    stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    for block in blocks:
        out = stream.resample_chunk(block)
        if len(out):
            yield out
    tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if len(tail):
        yield tail


def checked(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """``blocks``, raising :class:`DecodeError` on non-finite samples, no samples, or silence."""
    total, peak = 0, 0.0
    for block in blocks:
        if not np.isfinite(block).all():
            raise DecodeError(f"non-finite: {int((~np.isfinite(block)).sum())} NaN or Inf samples")
        total += len(block)
        peak = max(peak, float(np.abs(block).max()))
        yield block
    if total == 0:
        raise DecodeError("empty: no samples")
    if peak < SILENCE_PEAK:
        raise DecodeError("silent: every sample is zero")


def sliding_windows(
    blocks: Iterator[np.ndarray], n: int, hop: int, short: str = "pad"
) -> Iterator[Window]:
    """Windows of ``n`` samples starting every ``hop`` samples, over a stream of blocks.

    Memory holds one block and one window, whatever the length. Samples after the last whole
    window (or a recording shorter than one window) make a last window filled as
    :func:`~audioclf.features.audio.segment` fills a short clip (``short``: ``pad`` or ``repeat``).

    >>> [(w.start, w.stop, w.fill) for w in sliding_windows(iter([np.ones(5), np.ones(4)]), 4, 3)]
    [(0, 4, ''), (3, 7, ''), (6, 9, 'pad')]
    """
    if n < 1 or hop < 1:
        raise ValueError(f"window and hop must be positive, got {n} and {hop}")
    buf, buf_start, next_start, covered = np.zeros(0, dtype=np.float32), 0, 0, 0
    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else block
        while next_start + n <= buf_start + len(buf):
            lo = next_start - buf_start
            yield Window(next_start, next_start + n, buf[lo : lo + n])
            covered, next_start = next_start + n, next_start + hop
        drop = min(next_start - buf_start, len(buf))  # samples no later window needs
        buf, buf_start = buf[drop:], buf_start + drop
    end = buf_start + len(buf)
    if covered < end and next_start < end:
        rest = buf[next_start - buf_start :]
        yield Window(next_start, end, segment(rest, n, short=short)[0], short)
