"""The audio fingerprint the leakage audit compares files with (Haitsma & Kalker, "A highly
robust audio fingerprinting system", ISMIR 2002).

One 32-bit word per frame from the signs of energy differences between adjacent bands and
frames, which gain, re-encoding and resampling barely change; clips are compared at the
offset where their words agree, so trimming does not hide them. Files are decoded and
resampled in blocks, at most ``max_seconds`` of each, and the spectrum is taken a chunk of
frames at a time, so memory is bounded by that and not by the file.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from audioclf.data.manifest import Entry

FP_RATE = 11025  # fingerprints are computed at one rate, whatever the file's
FP_FRAME, FP_HOP = 2048, 128  # 186 ms frames every 11.6 ms (the paper: 370 ms / 11.6 ms at 5.5 kHz)
FP_CHUNK = 2048  # frames whose spectrum is held at once (~17 MB)
FP_BANDS = np.geomspace(300, 5000, 34)  # 33 log-spaced bands -> 32 difference bits
_BIN_BAND = np.searchsorted(FP_BANDS, np.fft.rfftfreq(FP_FRAME, 1 / FP_RATE)) - 1
BAND_MATRIX = (np.arange(len(FP_BANDS) - 1)[:, None] == _BIN_BAND[None, :]).astype(
    np.float32
)  # (33, F)


@dataclass(frozen=True)
class AudioPrint:
    """What the audit knows of one file: a hash of its decoded samples and its fingerprint."""

    sample_hash: str
    words: np.ndarray  # (frames,) uint32 sub-fingerprints


def decode_for_audit(path: Path, max_seconds: float) -> tuple[str, np.ndarray, int]:
    """The sample hash of the first ``max_seconds`` of a file, and their mono mix at ``FP_RATE``.

    Decoded, down-mixed and resampled (soxr, streaming) in blocks: memory is bounded by
    ``max_seconds`` at 11 kHz, not by the file's length or rate. The hash covers the
    decoded samples (all channels, float32), so a FLAC and a WAV of the same audio hash
    alike.

    Returns:
        (hex digest, mono samples at ``FP_RATE``, ``FP_RATE``).

    Raises:
        ValueError: the file holds no samples, or only zeros (nothing to compare).
    """
    digest, mono, peak = hashlib.sha256(), [], 0.0
    with sf.SoundFile(str(path)) as fh:
        frames = min(fh.frames, int(max_seconds * fh.samplerate))
        resampler = soxr.ResampleStream(fh.samplerate, FP_RATE, 1, dtype="float32", quality="HQ")
        blocks = fh.blocks(blocksize=1 << 16, frames=frames, dtype="float32", always_2d=True)
        for block in blocks:
            digest.update(np.ascontiguousarray(block).tobytes())
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            mono.append(resampler.resample_chunk(block.mean(axis=1)))
        mono.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    if frames <= 0:
        raise ValueError("empty: no samples")
    if peak == 0.0:
        raise ValueError("silent: every sample is zero")
    return digest.hexdigest(), np.concatenate(mono), FP_RATE


def fingerprint(mono: np.ndarray, sr: int) -> np.ndarray:
    """Sub-fingerprints (frames,) uint32 of a mono waveform at rate ``sr``.

    The spectrum is taken ``FP_CHUNK`` frames at a time: at an 11.6-ms hop a whole
    10-minute file's would need 0.4 GB, its band energies 13 MB.
    """
    if sr != FP_RATE:  # soxr HQ, as decode_for_audit streams it
        mono = soxr.resample(np.asarray(mono, dtype=np.float32), sr, FP_RATE, quality="HQ")
    wave = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if len(wave) < FP_FRAME + FP_HOP:
        return np.zeros(0, dtype=np.uint32)
    n_frames = 1 + (len(wave) - FP_FRAME) // FP_HOP
    window, bands = torch.hann_window(FP_FRAME), torch.from_numpy(BAND_MATRIX)
    energy = np.empty((len(FP_BANDS) - 1, n_frames))  # (33, frames)
    for f0 in range(0, n_frames, FP_CHUNK):
        n = min(FP_CHUNK, n_frames - f0)
        part = wave[f0 * FP_HOP : (f0 + n - 1) * FP_HOP + FP_FRAME]
        spec = torch.stft(part, FP_FRAME, FP_HOP, window=window, center=False, return_complex=True)
        energy[:, f0 : f0 + n] = (bands @ spec.abs().pow(2)).double().numpy()  # (33, n)
    diff = energy[:-1] - energy[1:]  # (32, frames)
    bits = (diff[:, 1:] - diff[:, :-1]) > 0  # (32, frames-1)
    weights = (1 << np.arange(32, dtype=np.uint64)).astype(np.uint64)
    return (bits.T.astype(np.uint64) @ weights).astype(np.uint32)


def bit_error_rate(a: np.ndarray, b: np.ndarray, offset: int) -> tuple[float, int]:
    """BER of ``a[i]`` against ``b[i + offset]`` over their overlap; returns (ber, frames compared)."""
    lo, hi = max(0, -offset), min(len(a), len(b) - offset)
    if hi <= lo:
        return 1.0, 0
    x = np.bitwise_xor(a[lo:hi], b[lo + offset : hi + offset])
    ones = np.unpackbits(x.view(np.uint8)).sum()
    return float(ones / (32 * (hi - lo))), hi - lo


def near_duplicates(
    prints: dict[str, np.ndarray], *, max_ber: float = 0.2, min_frames: int = 86, min_votes: int = 3
) -> list[dict]:
    """All pairs of files whose fingerprints match at some offset.

    Candidates come from exact sub-fingerprint matches voting for an offset (the
    paper's look-up table); each is confirmed by the bit error rate over the overlap
    (at least ``min_frames`` frames, ~1 s, or the shorter clip). Constant words
    (silence, clipping) do not vote.

    Returns:
        pairs ``{"a", "b", "ber", "offset_s"}`` with ``a < b``.
    """
    table: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for path, words in prints.items():
        for frame, word in enumerate(words.tolist()):
            if word not in (0, 0xFFFFFFFF):
                table[word].append((path, frame))
    found = []
    for path, words in prints.items():
        votes: Counter = Counter()
        for frame, word in enumerate(words.tolist()):
            for other, other_frame in table.get(word, ()):
                if other > path:
                    votes[(other, other_frame - frame)] += 1
        best: dict[str, tuple[float, int]] = {}
        for (other, offset), n in votes.most_common():
            if n < min_votes:
                break
            ber, frames = bit_error_rate(words, prints[other], offset)
            if frames >= min(min_frames, len(words) - 1, len(prints[other]) - 1) and ber <= max_ber:
                if other not in best or ber < best[other][0]:
                    best[other] = (ber, offset)
        found += [
            {
                "a": path,
                "b": other,
                "ber": round(ber, 4),
                "offset_s": round(offset * FP_HOP / FP_RATE, 3),
            }
            for other, (ber, offset) in sorted(best.items())
        ]
    return found


def fingerprint_files(
    entries: list[Entry], audio_root: Path, max_seconds: float = 600.0
) -> tuple[dict[str, AudioPrint], list[dict]]:
    """Hash and fingerprint every file with audio; the others (unreadable, empty, silent) are returned
    with their reason: they are not audited, and the features stage skips them too."""
    prints, failed = {}, []
    for e in entries:
        try:
            digest, mono, sr = decode_for_audit(audio_root / e.path, max_seconds)
            prints[e.path] = AudioPrint(digest, fingerprint(mono, sr))
        except Exception as exc:  # one bad file never stops the audit; the reason is reported
            failed.append({"path": e.path, "reason": f"not audited: {exc}"})
    return prints, failed
