"""Leakage audit of train/val/test splits.

Checks, for every fold:

1. ``groups``: no group in two splits;
2. ``exact``: no identical decoded audio in two splits (hash of the samples, so a WAV
   and a FLAC of the same audio match, while file bytes would not);
3. ``near``: no near-duplicates in two splits (the same audio re-encoded, gain-changed,
   resampled or trimmed), found with a robust audio fingerprint (Haitsma & Kalker,
   "A highly robust audio fingerprinting system", ISMIR 2002): one 32-bit word per
   frame from the signs of energy differences between adjacent bands and frames,
   which gain, re-encoding and resampling barely change; clips are compared at the
   offset where their words agree, so trimming does not hide them;
4. ``pretrained``: no test file whose id is in a list of ids known to be in a
   pretrained model's training data.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioclf.config.data import LEVELS
from audioclf.config.schema import choice
from audioclf.data.manifest import Entry
from audioclf.data.split import LeakageError

FP_RATE = 11025  # fingerprints are computed at one rate, whatever the file's
FP_FRAME, FP_HOP = 2048, 128  # 186 ms frames every 11.6 ms (the paper: 370 ms / 11.6 ms at 5.5 kHz)
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


def decode_for_audit(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    return data, sr


def sample_hash(data: np.ndarray) -> str:
    """sha256 of decoded samples (N, channels) as float32: equal audio, equal hash, any container."""
    return hashlib.sha256(np.ascontiguousarray(data, dtype=np.float32).tobytes()).hexdigest()


def fingerprint(mono: np.ndarray, sr: int) -> np.ndarray:
    """Sub-fingerprints (frames,) uint32 of a mono waveform at rate ``sr``."""
    wave = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if sr != FP_RATE:
        wave = AF.resample(wave, sr, FP_RATE)
    if len(wave) < FP_FRAME + FP_HOP:
        return np.zeros(0, dtype=np.uint32)
    spec = (
        torch.stft(
            wave,
            FP_FRAME,
            FP_HOP,
            window=torch.hann_window(FP_FRAME),
            center=False,
            return_complex=True,
        )
        .abs()
        .pow(2)
    )  # (F, frames)
    energy = (torch.from_numpy(BAND_MATRIX) @ spec).double().numpy()  # (33, frames)
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
    entries: list[Entry], audio_root: Path
) -> tuple[dict[str, AudioPrint], list[dict]]:
    """Hash and fingerprint every decodable file; undecodable ones are returned with reasons."""
    prints, failed = {}, []
    for e in entries:
        try:
            data, sr = decode_for_audit(audio_root / e.path)
        except Exception as exc:  # the features stage reports decode failures in detail
            failed.append({"path": e.path, "reason": f"unreadable: {exc}"})
            continue
        prints[e.path] = AudioPrint(sample_hash(data), fingerprint(data.mean(axis=1), sr))
    return prints, failed


log = logging.getLogger(__name__)
MAX_LISTED = 200  # violations written per check; the count is always complete


def audit_folds(
    folds: list[dict[str, list[Entry]]],
    audio_root: Path,
    *,
    near_level: str = "error",
    pretrained_ids: frozenset[str] = frozenset(),
    pretrained_level: str = "error",
    max_ber: float = 0.2,
    leaky: bool = False,
) -> dict:
    """Run the four checks on every fold.

    Args:
        folds: one dict split name -> entries per fold.
        audio_root: folder the manifest paths are relative to.
        near_level, pretrained_level: ``error`` fails the audit, ``warn`` only reports.
        pretrained_ids: ids (file stem or group) known to be in a pretrained model's
            training data; any in a test split is a violation.
        max_ber: bit error rate under which two fingerprints are the same audio.
        leaky: the split ignored groups on purpose; every check only warns.

    Returns:
        The report: ``ok``, and per check its ``level``, ``count`` and ``violations``.
    """
    for key, level in (
        ("audit.near_duplicates", near_level),
        ("audit.pretrained_overlap", pretrained_level),
    ):
        choice(level, LEVELS, key)
    entries = {e.path: e for fold in folds for rows in fold.values() for e in rows}
    prints, unreadable = fingerprint_files(list(entries.values()), audio_root)
    by_hash: dict[str, list[str]] = defaultdict(list)
    for path, p in prints.items():
        by_hash[p.sample_hash].append(path)
    same_audio = [
        (a, b) for paths in by_hash.values() for i, a in enumerate(paths) for b in paths[i + 1 :]
    ]
    near = [
        m
        for m in near_duplicates({k: p.words for k, p in prints.items()}, max_ber=max_ber)
        if prints[m["a"]].sample_hash != prints[m["b"]].sample_hash
    ]  # exact ones are reported as exact
    checks = {
        "groups": ("error", []),
        "exact": ("error", []),
        "near": (near_level, []),
        "pretrained": (pretrained_level, []),
    }
    for n, fold in enumerate(folds):
        where = {e.path: split for split, rows in fold.items() for e in rows}
        splits_of_group: dict[str, set[str]] = defaultdict(set)
        for path, split in where.items():
            splits_of_group[entries[path].group].add(split)
        checks["groups"][1].extend(
            {"fold": n, "group": g, "splits": sorted(s)}
            for g, s in sorted(splits_of_group.items())
            if len(s) > 1
        )
        checks["exact"][1].extend(
            {"fold": n, "a": a, "a_split": where[a], "b": b, "b_split": where[b]}
            for a, b in same_audio
            if a in where and b in where and where[a] != where[b]
        )
        checks["near"][1].extend(
            {"fold": n, **m, "a_split": where[m["a"]], "b_split": where[m["b"]]}
            for m in near
            if m["a"] in where and m["b"] in where and where[m["a"]] != where[m["b"]]
        )
        checks["pretrained"][1].extend(
            {"fold": n, "path": e.path}
            for e in fold.get("test", ())
            if {Path(e.path).stem, e.group} & pretrained_ids
        )
    report = {
        "leaky": leaky,
        "folds": len(folds),
        "files": len(entries),
        "unreadable": unreadable,
        "near_pairs_found": len(near),
        "checks": {},
    }
    ok = True
    for name, (level, violations) in checks.items():
        level = "warn" if leaky else level
        ok &= not (level == "error" and violations)
        report["checks"][name] = {
            "level": level,
            "count": len(violations),
            "violations": violations[:MAX_LISTED],
        }
    report["ok"] = ok
    return report


def describe_violations(report: dict, limit: int = 10) -> str:
    """One line per failing check, naming the first offending files or groups."""
    lines = []
    for name, check in report["checks"].items():
        if check["level"] != "error" or not check["count"]:
            continue
        shown = []
        for v in check["violations"][:limit]:
            if name == "groups":
                shown.append(f"group {v['group']} in {'/'.join(v['splits'])}")
            elif name == "pretrained":
                shown.append(v["path"])
            else:
                shown.append(f"{v['a']} ({v['a_split']}) ~ {v['b']} ({v['b_split']})")
        lines.append(f"{name}: {check['count']} violation(s), e.g. " + "; ".join(shown))
    return "\n".join(lines)


def conclude(report: dict, report_path: str | Path) -> None:
    """Raise :class:`LeakageError` naming the offending files if the audit failed; else log its counts."""
    counts = {name: check["count"] for name, check in report["checks"].items()}
    if report["ok"]:
        log.info(
            "audit: %d files, %d fold(s), violations %s%s",
            report["files"],
            report["folds"],
            counts,
            " (LEAKY split: reported, not failed)" if report["leaky"] else "",
        )
    else:
        raise LeakageError(
            f"leakage audit failed (details in {report_path}):\n{describe_violations(report)}"
        )
