"""Log-mel front-end and the feature cache.

The cache is one folder: ``features.f32`` (all segments, contiguous float32, read
with ``np.memmap``), ``index.csv`` (row -> path, label, group, segment) and
``meta.json`` (shape, front-end config, class list). It holds every decodable file
of the manifest, whatever the split, so a new split or model never recomputes it.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import librosa
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from audioclf.config import FeaturesConfig
from audioclf.io import atomic_path, write_json
from audioclf.manifest import Entry

DATA_FILE, INDEX_FILE, META_FILE = "features.f32", "index.csv", "meta.json"


class LogMel(nn.Module):
    """Waveform to log-mel in dB, equal to ``librosa.power_to_db(melspectrogram(...))``.

    Uses librosa's Slaney mel filterbank, a periodic Hann window and a centred,
    zero-padded STFT (librosa's defaults), ``ref=1.0``, ``amin=1e-10`` and a per-item
    ``top_db`` floor.

    Input (B, N) float waveform at ``cfg.sample_rate``; output (B, n_mels, 1 + N // hop).
    """

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        self.n_fft, self.hop_length, self.top_db = cfg.n_fft, cfg.hop_length, cfg.top_db
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                 fmin=cfg.f_min, fmax=cfg.f_max)
        self.register_buffer("mel_fb", torch.from_numpy(fb))           # (n_mels, n_fft//2+1)
        self.register_buffer("window", torch.hann_window(cfg.n_fft))    # periodic, like scipy's 'hann'

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True).abs() ** 2  # (B, F, T)
        mel = torch.matmul(self.mel_fb, spec)                            # (B, n_mels, T)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
        return torch.maximum(db, floor)


class DecodeError(Exception):
    """A file that cannot be turned into a usable waveform; the message is the reason."""


def load_waveform(path: Path, sample_rate: int) -> np.ndarray:
    """Decode, down-mix to mono and resample one file.

    Returns:
        float32 waveform of shape (N,) at ``sample_rate``.

    Raises:
        DecodeError: unreadable, empty, non-finite or all-zero audio, with the reason.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except Exception as exc:  # libsndfile reports format problems in several exception types
        raise DecodeError(f"unreadable: {exc}") from exc
    if data.size == 0:
        raise DecodeError("empty: no samples")
    if not np.isfinite(data).all():
        raise DecodeError("contains NaN or Inf samples")
    mono = data.mean(axis=1)
    if not mono.any():
        raise DecodeError("silent: all samples are zero")
    if sr != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), sr, sample_rate).numpy()
    return mono


def segment(wave: np.ndarray, n: int) -> np.ndarray:
    """Cut a waveform into consecutive segments of ``n`` samples.

    A clip shorter than one segment is zero-padded to one; a trailing remainder
    shorter than a segment is dropped.

    Returns:
        array of shape (S, n), S >= 1.
    """
    if len(wave) < n:
        wave = np.pad(wave, (0, n - len(wave)))
    count = len(wave) // n
    return wave[: count * n].reshape(count, n)


@dataclass(frozen=True)
class Row:
    path: str
    label: str
    group: str
    segment: int


def _segments(entries: list[Entry], audio_root: Path, cfg: FeaturesConfig,
              failures: list[dict]) -> Iterator[tuple[Row, np.ndarray]]:
    for entry in entries:
        try:
            wave = load_waveform(audio_root / entry.path, cfg.sample_rate)
        except DecodeError as exc:
            failures.append({"path": entry.path, "reason": str(exc)})
            continue
        for k, seg in enumerate(segment(wave, cfg.segment_samples)):
            yield Row(entry.path, entry.label, entry.group, k), seg


@torch.no_grad()
def extract_features(entries: list[Entry], audio_root: Path, cfg: FeaturesConfig,
                     out_dir: Path) -> dict:
    """Compute log-mel segments of every manifest entry into the cache at ``out_dir``.

    Files that fail to decode are skipped and listed with their reason. The cache
    appears at ``out_dir`` only once complete.

    Returns:
        The coverage report (files, segments, coverage, failures with reasons).

    Raises:
        RuntimeError: if coverage is below ``cfg.min_coverage`` (nothing is published).
    """
    logmel = LogMel(cfg)
    failures: list[dict] = []
    rows: list[Row] = []
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        with open(tmp / DATA_FILE, "wb") as data:
            batch: list[np.ndarray] = []

            def flush():
                mel = logmel(torch.from_numpy(np.stack(batch)))         # (B, n_mels, T)
                data.write(mel.numpy().astype(np.float32).tobytes())
                batch.clear()

            for row, seg in _segments(entries, audio_root, cfg, failures):
                rows.append(row)
                batch.append(seg)
                if len(batch) == cfg.batch_size:
                    flush()
            if batch:
                flush()
        report = _coverage(entries, rows, failures)
        if report["coverage"] < cfg.min_coverage:
            raise CoverageError(report, cfg.min_coverage)
        with open(tmp / INDEX_FILE, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "path", "label", "group", "segment"])
            writer.writerows((i, r.path, r.label, r.group, r.segment) for i, r in enumerate(rows))
        meta = {"shape": [len(rows), cfg.n_mels, cfg.n_frames], "dtype": "float32",
                "labels": sorted({e.label for e in entries}), "frontend": dataclasses.asdict(cfg)}
        write_json(meta, tmp / META_FILE)
    return report


class CoverageError(RuntimeError):
    def __init__(self, report: dict, minimum: float):
        self.report = report
        reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in report["failed"][:5])
        super().__init__(f"only {report['coverage']:.1%} of files decoded, below features.min_coverage="
                         f"{minimum:g}; first failures: {reasons}. Fix or remove those files, or lower "
                         f"features.min_coverage.")


def _coverage(entries: list[Entry], rows: list[Row], failures: list[dict]) -> dict:
    n_ok = len(entries) - len(failures)
    return {"files": len(entries), "decoded": n_ok, "segments": len(rows),
            "coverage": round(n_ok / len(entries), 6) if entries else 0.0,
            "failed": sorted(failures, key=lambda f: f["path"])}


class FeatureStore:
    """Read access to a feature cache: memory-mapped segments plus their index."""

    def __init__(self, cache_dir: str | Path):
        cache_dir = Path(cache_dir)
        if not (cache_dir / META_FILE).is_file():
            raise FileNotFoundError(f"no feature cache at {cache_dir} (run: dvc repro features)")
        self.meta = json.loads((cache_dir / META_FILE).read_text())
        self.labels: list[str] = self.meta["labels"]
        with open(cache_dir / INDEX_FILE, newline="") as fh:
            self.rows = [Row(r["path"], r["label"], r["group"], int(r["segment"])) for r in csv.DictReader(fh)]
        self.data = np.memmap(cache_dir / DATA_FILE, dtype=np.float32, mode="r",
                              shape=tuple(self.meta["shape"]))

    def select(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray, list[Row]]:
        """All segments of the given files (files missing from the cache are skipped).

        Returns:
            features (S, n_mels, T) float32, label indices (S,) int64, and the rows.
        """
        wanted = set(paths)
        idx = [i for i, r in enumerate(self.rows) if r.path in wanted]
        label_ix = {name: i for i, name in enumerate(self.labels)}
        y = np.array([label_ix[self.rows[i].label] for i in idx], dtype=np.int64)
        return np.asarray(self.data[idx]), y, [self.rows[i] for i in idx]
