"""The features stage's work: features of every manifest file, computed once and shared.

Files whose features the store (:mod:`audioclf.features.store`) already holds are not even
decoded. The others are decoded, down-mixed, resampled, hashed and segmented by a
pool of threads (libsndfile, soxr, hashlib and torch all release the GIL); on the CPU
each thread also runs the front-end (:mod:`audioclf.features.frontends`, one torch
thread each) on its files' segments; on a GPU the main thread runs the same front-end on
batches of ``batch_size`` segments. New entries go to the store and are committed; then
the stage's output folder (:mod:`audioclf.features.table`) is assembled from the store
and published whole. Memory stays flat in the number of files: a bounded number of
files is in flight and nothing is accumulated but the index.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import Entry
from audioclf.devices import resolve_device
from audioclf.errors import UserError
from audioclf.features.frontends import FrontEnd
from audioclf.features.shards import ShardWriter
from audioclf.features.store import (
    SHARD_BYTES,
    FeatureStore,
    StoredEntry,
    frontend_key,
    frontend_params,
)
from audioclf.features.table import DATA_FILE, INDEX_FILE, META_FILE, Row, write_index
from audioclf.features.workers import (
    FILES_PER_TASK,
    Prepared,
    bounded,
    flush,
    prepare,
    worker_pool,
)
from audioclf.io import atomic_path
from audioclf.progress import Progress

log = logging.getLogger(__name__)


class CoverageError(UserError, RuntimeError):
    """Too few files decoded; ``report`` holds the coverage and every failure's reason."""

    def __init__(self, report: dict, minimum: float):
        self.report = report
        reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in report["failed"][:5])
        super().__init__(
            f"only {report['coverage']:.1%} of files decoded, below features.min_coverage="
            f"{minimum:g}; first failures: {reasons}. Fix or remove those files, or lower "
            f"features.min_coverage."
        )


def extract_features(
    entries: list[Entry],
    audio_root: Path,
    cfg: FeaturesConfig,
    out_dir: Path,
    *,
    store_dir: Path,
    shard_bytes: int = SHARD_BYTES,
    dropped: list[dict] = (),
) -> dict:
    """Features of every manifest entry, from the shared store or computed into it, assembled at ``out_dir``.

    ``dropped`` are the files the download left out of the manifest (``{"path", "reason"}``,
    its ``unreadable.json``): they count as failures in the report and in the coverage.

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
    found: dict[int, StoredEntry] = {}  # manifest index -> its segments in the store
    notes: dict[int, tuple[str, ...]] = {}
    for i, e in enumerate(entries):
        if e.sha256 in store.by_file:  # the very same file seen before: nothing to decode
            found[i], notes[i] = store.by_file[e.sha256], store.by_file[e.sha256].notes
    todo = [(i, e) for i, e in enumerate(entries) if i not in found]
    with ShardWriter(store, shard_bytes) as writer:  # commits on success, discards on an error
        failures, computed = _compute(todo, audio_root, cfg, device, store, writer, found, notes)
    failures += [
        {"path": d["path"], "reason": f"left out at download: {d['reason']}"} for d in dropped
    ]
    report = _coverage(
        entries, found, failures, notes, computed=computed, key=store.dir.name, dropped=len(dropped)
    )
    if report["coverage"] < cfg.min_coverage:
        raise CoverageError(report, cfg.min_coverage)
    _assemble(entries, found, store, cfg, out_dir)
    log.info(
        "features: %d/%d files (%.1f%%), %d segments (%d files computed, %d from the store), "
        "%d skipped",
        report["decoded"],
        report["files"],
        100 * report["coverage"],
        report["segments"],
        report["computed"],
        report["reused"],
        len(report["failed"]),
    )
    return report


def reproducible(report: dict) -> dict:
    """The report without what depends on this machine's store (``computed``, ``reused``), for
    ``reports/features.json``, whose content must follow from the inputs alone."""
    return {k: v for k, v in report.items() if k not in ("computed", "reused")}


def _compute(
    todo: list[tuple[int, Entry]],
    audio_root: Path,
    cfg: FeaturesConfig,
    device: torch.device,
    store: FeatureStore,
    writer: ShardWriter,
    found: dict[int, StoredEntry],
    notes: dict[int, tuple[str, ...]],
) -> tuple[list[dict], int]:
    """Decode the (manifest index, entry) pairs, give new features to ``writer``, fill ``found`` and ``notes``.

    Returns:
        The failures (path, reason) and the number of entries written to the store.
    """
    if not todo:  # everything came from the store: no front-end to build (BirdNET's takes ~1 s)
        return [], 0
    frontend = FrontEnd(cfg).to(device)
    failures, made = [], {}  # made: audio hash -> entry written by this run
    workers = cfg.workers or len(os.sched_getaffinity(0))
    # on the CPU each worker runs the front-end on its own files; one that threads may not share
    # (BirdNET's interpreter) runs in this thread on batches, like a GPU's
    cpu_frontend = frontend if device.type == "cpu" and frontend.threadsafe else None

    def known(digest: str) -> bool:
        return digest in store.by_audio or digest in made

    def keep(p: Prepared) -> None:
        if p.error:  # its features were not finite (see workers.fill)
            failures.append({"path": p.entry.path, "reason": p.error})
            return
        if p.audio_hash not in made:  # two files of identical audio in one batch: stored once
            made[p.audio_hash] = writer.add(
                p.features, audio_hash=p.audio_hash, file_sha256=p.entry.sha256, notes=p.notes
            )
        found[p.index] = made[p.audio_hash]

    chunks = (todo[i : i + FILES_PER_TASK] for i in range(0, len(todo), FILES_PER_TASK))
    batch: list[Prepared] = []  # GPU: files waiting for a full batch of segments
    progress = Progress(log, "features", len(todo))
    with worker_pool(workers) as pool:
        for prepared in bounded(
            pool,
            lambda c: prepare(c, audio_root, cfg, cpu_frontend, known),
            chunks,
            window=2 * workers,
        ):
            for p in prepared:
                if p.error:
                    failures.append({"path": p.entry.path, "reason": p.error})
                    continue
                notes[p.index] = tuple(p.notes)
                if known(p.audio_hash):  # same audio as a stored file: share its entry
                    found[p.index] = store.by_audio.get(p.audio_hash) or made[p.audio_hash]
                elif p.features is not None:
                    keep(p)
                else:
                    batch.append(p)
            progress.update(len(prepared))
            if sum(len(p.segments) for p in batch) >= cfg.batch_size:
                flush(batch, frontend, cfg, device, keep)
        flush(batch, frontend, cfg, device, keep)
    return failures, len(made)


def _assemble(
    entries: list[Entry],
    found: dict[int, StoredEntry],
    store: FeatureStore,
    cfg: FeaturesConfig,
    out_dir: Path,
) -> None:
    """Write the stage's feature table: the entries' segments in manifest order, index and meta."""
    order = [(entries[i], found[i]) for i in sorted(found)]
    rows = [
        Row(e.path, e.label, e.group, k, round(k * cfg.hop_samples / cfg.sample_rate, 6))
        for e, s in order
        for k in range(s.rows)
    ]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        with open(tmp / DATA_FILE, "wb") as fh:
            store.copy_to([s for _, s in order], fh)
        write_index(rows, tmp / INDEX_FILE)
        meta = {
            "shape": [len(rows), *cfg.shape],
            "dtype": "float32",
            "labels": sorted({e.label for e in entries}),
            "frontend": frontend_params(cfg),
            "frontend_key": store.dir.name,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _coverage(
    entries: list[Entry],
    found: dict[int, StoredEntry],
    failures: list[dict],
    notes: dict[int, tuple[str, ...]],
    *,
    computed: int,
    key: str,
    dropped: int = 0,
) -> dict:
    """The stage report; ``computed`` entries were written by this run, the rest were reused from the
    store; ``files`` and the coverage count the ``dropped`` ones (left out at download) too."""
    files = len(entries) + dropped
    return {
        "files": files,
        "decoded": len(found),
        "segments": sum(s.rows for s in found.values()),
        "coverage": round(len(found) / files, 6) if files else 0.0,
        "computed": computed,
        "reused": len(found) - computed,
        "frontend_key": key,
        "failed": sorted(failures, key=lambda f: f["path"]),
        "notes": [{"path": entries[i].path, "note": n} for i in sorted(notes) for n in notes[i]],
    }
