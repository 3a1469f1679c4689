"""The features stage's threads: each decodes, down-mixes, resamples, hashes and segments a few
files, and on the CPU also runs the front-end on their segments; on a GPU the main thread runs
the front-end on batches (:func:`flush`).

libsndfile, soxr, hashlib and torch release the GIL, so threads run in parallel, each with one
torch thread (:func:`worker_pool`).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audioclf.config.features import VECTOR_KINDS, FeaturesConfig
from audioclf.data.manifest import Entry
from audioclf.features.audio import DecodeError, load_waveform, segment
from audioclf.features.frontends import FrontEnd

FILES_PER_TASK = 16  # files a thread takes at a time
CPU_BATCH = 16  # segments per front-end call on the CPU


@dataclass
class Prepared:
    """One file after decoding: its segments (S, n) and, on the CPU, their features (S, C, F, T)."""

    index: int  # position in the manifest
    entry: Entry
    error: str | None = None
    audio_hash: str = ""
    notes: list[str] = field(default_factory=list)
    segments: np.ndarray | None = None
    features: np.ndarray | None = None


@torch.inference_mode()
def transform(
    frontend: FrontEnd, segments: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    """Features (S, C, F, T) float32 of segments (S, n), in batches of ``batch_size``."""
    out = [
        frontend(torch.from_numpy(segments[i : i + batch_size]).to(device, non_blocking=True))
        .cpu()
        .numpy()
        for i in range(0, len(segments), batch_size)
    ]
    return out[0] if len(out) == 1 else np.concatenate(out)


def prepare(
    chunk: list[tuple[int, Entry]],
    audio_root: Path,
    cfg: FeaturesConfig,
    frontend: FrontEnd | None,
    known: Callable[[str], bool],
) -> list[Prepared]:
    """Decode and segment (manifest index, entry) pairs; with ``frontend`` (CPU), compute their features.

    On the CPU the chunk's new segments go through the front-end together, ``CPU_BATCH`` at a
    time.
    """
    out = []
    for index, entry in chunk:
        try:
            wave = load_waveform(
                audio_root / entry.path, cfg.sample_rate, max_seconds=cfg.max_file_seconds
            )
        except DecodeError as exc:
            out.append(Prepared(index, entry, error=str(exc)))
            continue
        segments = segment(wave.samples, cfg.segment_samples, cfg.hop_samples, cfg.short_clips)
        out.append(
            Prepared(index, entry, audio_hash=wave.digest, notes=wave.notes, segments=segments)
        )
    new = [p for p in out if p.error is None and not known(p.audio_hash)]
    if frontend is not None and new:
        segments = np.concatenate([p.segments for p in new])
        fill(new, transform(frontend, segments, CPU_BATCH, torch.device("cpu")), pooled(cfg))
    return out


def pooled(cfg: FeaturesConfig) -> bool:
    """Whether a file's segments become one row, their mean (``embedding_pool: mean`` of a vector
    front-end: BirdNET's embeddings, openSMILE's functionals)."""
    return cfg.kind in VECTOR_KINDS and cfg.embedding_pool == "mean"


def fill(prepared: list[Prepared], feats: np.ndarray, pool: bool = False) -> None:
    """Hand each file its rows of ``feats`` (sum of segments, C, F, T) and drop its waveform.

    With ``pool``, a file's rows are averaged into one (1, C, F, T). A file whose features
    are not all finite (samples so large that their power overflows float32) gets an error
    instead: it is skipped with that reason, never stored.
    """
    start = 0
    for p in prepared:
        rows, start = feats[start : start + len(p.segments)], start + len(p.segments)
        if pool:
            rows = rows.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
        p.segments = None
        if np.isfinite(rows).all():
            p.features = rows
        else:
            peak = "overflow" if np.isinf(rows).any() else "NaN"
            p.error = (
                f"non-finite features ({peak} in the front-end: the samples are too large for "
                f"float32 power; rescale the file to [-1, 1])"
            )


def bounded(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """``pool.map(fn, items)`` in order, with at most ``window`` tasks submitted and not yet consumed."""
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads that run one torch thread each, as does the caller meanwhile.

    Parallelism comes from the worker threads: torch's own pool on top of them would put
    more busy threads than cores. OpenMP's thread count is per thread, so each worker sets
    its own; the caller's count comes back after the block.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool
    finally:
        torch.set_num_threads(threads)


def flush(
    batch: list[Prepared],
    frontend: FrontEnd,
    cfg: FeaturesConfig,
    device: torch.device,
    keep: Callable[[Prepared], None],
) -> None:
    """Run the front-end (on ``device``) over the segments of the files in ``batch``, store them, empty it."""
    if not batch:
        return
    fill(
        batch,
        transform(frontend, np.concatenate([p.segments for p in batch]), cfg.batch_size, device),
        pooled(cfg),
    )
    for p in batch:
        keep(p)
    batch.clear()
