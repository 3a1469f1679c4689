"""The features stage's work: features of every manifest file, computed once and shared.

Files whose features the store (:mod:`audioclf.features.store`) already holds are not even
decoded. The others are decoded, down-mixed, resampled, hashed and segmented by a
pool of threads (libsndfile, soxr, BLAKE3 and torch all release the GIL); on the CPU
each thread also runs the front-end (:mod:`audioclf.features.frontends`, one torch
thread each) on each file's segments as soon as they are decoded, while they are
still in the core's cache; on a GPU the main thread runs the same front-end on
batches of ``batch_size`` segments. New entries go
to the store, then the stage's output folder (:mod:`audioclf.features.table`) is assembled
from it by copying byte ranges, while the store's last shard is committed (its
``fsync`` waits on the disk); the folder is published once that commit succeeded.
Where the output is exactly one whole shard (a first run), its data file is a hard
link to that shard instead: no copy (0.3-2.6 s for the 0.88 GB of 10 000 clips here).
Memory stays flat in the number of files: a bounded number of files is in flight and
nothing is accumulated but the index.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from audioclf.features.audio import DecodeError, load_waveform, segment
from audioclf.features.store import SHARD_BYTES, FeatureStore, ShardWriter, StoredEntry, frontend_key, frontend_params
from audioclf.config.features import FeaturesConfig
from audioclf.features.table import DATA_FILE, INDEX_FILE, META_FILE, Row, write_index
from audioclf.features.frontends import FrontEnd
from audioclf.devices import resolve_device
from audioclf.errors import UserError
from audioclf.io import atomic_path, keep_freed_memory
from audioclf.data.manifest import Entry

FILES_PER_TASK = 8   # files a thread takes at a time
CPU_BATCH = 2        # segments per front-end call on the CPU (more outgrow the core's cache)


class CoverageError(UserError, RuntimeError):
    """Too few files decoded; ``report`` holds the coverage and every failure's reason."""

    def __init__(self, report: dict, minimum: float):
        self.report = report
        reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in report["failed"][:5])
        super().__init__(f"only {report['coverage']:.1%} of files decoded, below features.min_coverage="
                         f"{minimum:g}; first failures: {reasons}. Fix or remove those files, or lower "
                         f"features.min_coverage.")


@dataclass
class _Prepared:
    """One file after decoding: its segments (S, n) and, on the CPU, their features (S, C, F, T)."""

    index: int          # position in the manifest
    entry: Entry
    error: Optional[str] = None
    audio_hash: str = ""
    notes: list[str] = field(default_factory=list)
    segments: Optional[np.ndarray] = None
    features: Optional[np.ndarray] = None


@torch.inference_mode()
def transform(frontend: FrontEnd, segments: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Features (S, C, F, T) float32 of segments (S, n), in batches of ``batch_size``."""
    out = [frontend(torch.from_numpy(segments[i:i + batch_size]).to(device, non_blocking=True)).cpu().numpy()
           for i in range(0, len(segments), batch_size)]
    return out[0] if len(out) == 1 else np.concatenate(out)


def _prepare(chunk: list[tuple[int, Entry]], audio_root: Path, cfg: FeaturesConfig, frontend: Optional[FrontEnd],
             known: Callable[[str], bool]) -> list[_Prepared]:
    """Decode and segment (manifest index, entry) pairs; with ``frontend`` (CPU), compute their features.

    On the CPU each file's segments go through the front-end on their own, ``CPU_BATCH``
    at a time: larger batches outgrow the core's cache and ran slower per segment.
    """
    out = []
    for index, entry in chunk:
        try:
            wave = load_waveform(audio_root / entry.path, cfg.sample_rate, max_seconds=cfg.max_file_seconds)
        except DecodeError as exc:
            out.append(_Prepared(index, entry, error=str(exc)))
            continue
        p = _Prepared(index, entry, audio_hash=wave.digest, notes=wave.notes,
                      segments=segment(wave.samples, cfg.segment_samples, cfg.hop_samples, cfg.short_clips))
        if frontend is not None and not known(p.audio_hash):
            p.features, p.segments = transform(frontend, p.segments, CPU_BATCH, torch.device("cpu")), None
        out.append(p)
    return out


def _fill(prepared: list[_Prepared], feats: np.ndarray) -> None:
    """Hand each file its rows of ``feats`` (sum of segments, C, F, T) and drop its waveform."""
    start = 0
    for p in prepared:
        p.features, start = feats[start:start + len(p.segments)], start + len(p.segments)
        p.segments = None


def _bounded(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """``pool.map(fn, items)`` in order, with at most ``window`` tasks submitted and not yet consumed."""
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def extract_features(entries: list[Entry], audio_root: Path, cfg: FeaturesConfig, out_dir: Path, *,
                     store_dir: Path, shard_bytes: int = SHARD_BYTES) -> dict:
    """Features of every manifest entry, from the shared store or computed into it, assembled at ``out_dir``.

    Files that fail to decode are skipped and listed with their reason. ``out_dir``
    appears only once complete; store entries are complete once committed, whatever
    happens later.

    Args:
        entries: the manifest; each entry's ``sha256`` (of the file's bytes) finds its stored features.
        audio_root: the folder the entries' paths are relative to.
        cfg: the front-end, segmentation, parallelism and coverage params.
        out_dir: the feature table to publish (see :mod:`audioclf.features.table`).
        store_dir: the shared store (``features.store_dir``, resolved by the stage).
        shard_bytes: size at which a store shard is committed and a new one started.

    Returns:
        The coverage report: files, decoded, segments, coverage, computed and reused
        entries, failures with reasons, notes on unusual files, and the front-end key.

    Raises:
        CoverageError: if coverage is below ``cfg.min_coverage`` (nothing is published).
    """
    device = resolve_device(cfg.device, "features.device")
    store = FeatureStore(store_dir, frontend_key(cfg), cfg.shape)
    found: dict[int, StoredEntry] = {}   # manifest index -> its segments in the store
    notes: dict[int, tuple[str, ...]] = {}
    for i, e in enumerate(entries):
        if e.sha256 in store.by_file:    # the very same file seen before: nothing to decode
            found[i], notes[i] = store.by_file[e.sha256], store.by_file[e.sha256].notes
    todo = [(i, e) for i, e in enumerate(entries) if i not in found]
    writer = store.writer(shard_bytes)
    failures, computed = _compute(todo, audio_root, cfg, device, store, writer, found, notes)
    report = _coverage(entries, found, failures, notes, computed=computed, key=store.dir.name)
    try:
        uncommitted = writer.open_uncommitted()
    except BaseException:
        writer.discard()
        raise
    with ThreadPoolExecutor(1) as background:      # the last commit's fsync waits on the disk: assemble meanwhile
        committing = background.submit(writer.close)
        try:
            if report["coverage"] < cfg.min_coverage:
                raise CoverageError(report, cfg.min_coverage)
            _assemble(entries, found, store, cfg, out_dir, uncommitted, before_publish=committing.result)
        finally:
            for fh in uncommitted.values():
                fh.close()
            committing.result()
    return report


def _compute(todo: list[tuple[int, Entry]], audio_root: Path, cfg: FeaturesConfig, device: torch.device,
             store: FeatureStore, writer: ShardWriter, found: dict[int, StoredEntry],
             notes: dict[int, tuple[str, ...]]) -> tuple[list[dict], int]:
    """Decode the (manifest index, entry) pairs, give new features to ``writer``, fill ``found`` and ``notes``.

    The caller commits the writer's last shard; if this raises, that shard is discarded.

    Returns:
        The failures (path, reason) and the number of entries written to the store.
    """
    frontend = FrontEnd(cfg).to(device)
    failures, made = [], {}               # made: audio hash -> entry written by this run
    workers = cfg.workers or len(os.sched_getaffinity(0))
    cpu_frontend = frontend if device.type == "cpu" else None

    def known(digest: str) -> bool:
        return digest in store.by_audio or digest in made

    def keep(p: _Prepared) -> None:
        if p.audio_hash not in made:   # two files of identical audio in one batch: stored once
            made[p.audio_hash] = writer.add(p.features, audio_hash=p.audio_hash,
                                            file_sha256=p.entry.sha256, notes=p.notes)
        found[p.index] = made[p.audio_hash]

    chunks = (todo[i:i + FILES_PER_TASK] for i in range(0, len(todo), FILES_PER_TASK))
    batch: list[_Prepared] = []   # GPU: files waiting for a full batch of segments
    try:
        with _single_threaded_kernels(), ThreadPoolExecutor(workers) as pool:
            for prepared in _bounded(pool, lambda c: _prepare(c, audio_root, cfg, cpu_frontend, known), chunks,
                                     window=2 * workers):
                for p in prepared:
                    if p.error:
                        failures.append({"path": p.entry.path, "reason": p.error})
                        continue
                    notes[p.index] = tuple(p.notes)
                    if known(p.audio_hash):     # same audio as a stored file: share its entry
                        found[p.index] = store.by_audio.get(p.audio_hash) or made[p.audio_hash]
                    elif p.features is not None:
                        keep(p)
                    else:
                        batch.append(p)
                if sum(len(p.segments) for p in batch) >= cfg.batch_size:
                    _flush(batch, frontend, cfg, device, keep)
            _flush(batch, frontend, cfg, device, keep)
    except BaseException:
        writer.discard()
        raise
    return failures, len(made)


@contextlib.contextmanager
def _single_threaded_kernels() -> Iterator[None]:
    """One torch, BLAS and OpenMP thread per worker, and freed memory kept for reuse.

    Parallelism comes from the worker threads: nested pools oversubscribe the cores
    (libsoxr's OpenMP and OpenBLAS threads spin while they wait). Without
    :func:`keep_freed_memory` every file's arrays were unmapped and faulted in again.
    """
    keep_freed_memory()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def _flush(batch: list[_Prepared], frontend: FrontEnd, cfg: FeaturesConfig, device: torch.device,
           keep: Callable[[_Prepared], None]) -> None:
    """Run the front-end (on ``device``) over the segments of the files in ``batch``, store them, empty it."""
    if not batch:
        return
    _fill(batch, transform(frontend, np.concatenate([p.segments for p in batch]), cfg.batch_size, device))
    for p in batch:
        keep(p)
    batch.clear()


def _assemble(entries: list[Entry], found: dict[int, StoredEntry], store: FeatureStore, cfg: FeaturesConfig,
              out_dir: Path, uncommitted: dict, before_publish: Callable[[], object]) -> None:
    """Write the stage's cache folder: the entries' segments in manifest order, index and meta.

    ``uncommitted``: open files of shards being committed meanwhile, by name (see
    ``FeatureStore.copy_to``). ``before_publish`` waits for that commit: if it raises,
    the folder is not published.
    """
    order = [(entries[i], found[i]) for i in sorted(found)]
    rows = [Row(e.path, e.label, e.group, k, round(k * cfg.hop_samples / cfg.sample_rate, 6))
            for e, s in order for k in range(s.rows)]
    stored = [s for _, s in order]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        if not store.link_whole(stored, tmp / DATA_FILE, committed=before_publish):
            with open(tmp / DATA_FILE, "wb", buffering=0) as fh:
                store.copy_to(stored, fh, uncommitted)
        write_index(rows, tmp / INDEX_FILE)
        meta = {"shape": [len(rows), *cfg.shape], "dtype": "float32", "labels": sorted({e.label for e in entries}),
                "frontend": frontend_params(cfg), "frontend_key": store.dir.name}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        before_publish()


def _coverage(entries: list[Entry], found: dict[int, StoredEntry], failures: list[dict],
              notes: dict[int, tuple[str, ...]], *, computed: int, key: str) -> dict:
    """The stage report; ``computed`` entries were written by this run, the rest were reused from the store."""
    return {"files": len(entries), "decoded": len(found), "segments": sum(s.rows for s in found.values()),
            "coverage": round(len(found) / len(entries), 6) if entries else 0.0,
            "computed": computed, "reused": len(found) - computed, "frontend_key": key,
            "failed": sorted(failures, key=lambda f: f["path"]),
            "notes": [{"path": entries[i].path, "note": n} for i in sorted(notes) for n in notes[i]]}
