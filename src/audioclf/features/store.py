"""A persistent, content-addressed store of feature segments, shared by every experiment.

Layout under ``<store_dir>/<frontend key>/``::

    <shard>.f32          segments of many files, contiguous float32 (rows, C, F, T)
    <shard>.index.csv    one line per file: audio hash, file sha256, first row, rows, notes
    .<shard>.f32.tmp     a shard being written (never read)

An entry is keyed by the decoded audio's hash (BLAKE3) within a directory keyed by the
front-end params, so a new model, loss or split never recomputes features, and
experiments share them. The file's own sha256 (from the manifest) is remembered
beside it, so a later run finds its entries without decoding anything.

A shard's data is written to a temporary file, flushed to disk and renamed, and
only then is its index written (atomically), by :class:`audioclf.features.shards.ShardWriter`. An index is the only proof that an
entry is complete: a run interrupted at any point leaves at most a ``.tmp`` file
that no reader looks at, and that a later run deletes once its writer is gone.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.config.features import VECTOR_KINDS, FeaturesConfig
from audioclf.features.birdnet import MODEL_NAME as BIRDNET_MODEL
from audioclf.features.opensmile import FEATURE_SETS

# bump when decoding, the audio hash or a front-end changes: old entries then miss
# (2: audio keyed by BLAKE3, not sha256; 3: on the CPU the Hann window is applied to the
# spectrum; 4: on AMD CPUs MKL's FFT ran its vector code; 5: one plain torch front-end on
# every device, which rounds differently from the compiled CPU kernels of 3 and 4)
FRONTEND_VERSION = 5
# fields of FeaturesConfig that do not change the features (how, where and how many)
NOT_IN_KEY = ("batch_size", "workers", "device", "store_dir", "min_coverage")
SPECTRAL_KINDS = ("logmel", "mfcc", "imagenet")  # the log-mel and what is made of it
# fields that shape only some kinds' features (in no other kind's key: a logmel key is as before)
ONLY_FOR = {
    "n_mfcc": ("mfcc",),
    "delta_width": ("mfcc",),
    "image_size": ("imagenet",),
    "embedding_pool": VECTOR_KINDS,
    "top_db": SPECTRAL_KINDS,
    "highpass_order": SPECTRAL_KINDS,
    **{f: (*SPECTRAL_KINDS, "fbank") for f in ("n_fft", "hop_length", "n_mels", "f_min", "f_max")},
}
INDEX_COLUMNS = ("audio_hash", "file_sha256", "start", "rows", "notes")
# an interrupted run loses at most one shard of work (1 GiB: ~11 000 4-s log-mel segments, ~10 s of
# extraction on 2 cores); a run whose output is one whole shard links it instead of copying it
SHARD_BYTES = 1 << 30
COPY_BLOCK = 64 << 20  # bytes copied through memory at a time where the kernel cannot


def frontend_params(cfg: FeaturesConfig) -> dict:
    """The params that shape the features: all but :data:`NOT_IN_KEY`, and of the :data:`ONLY_FOR`
    fields only those of ``cfg.kind`` (the MFCC ones only for ``mfcc``, ...)."""
    return {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in NOT_IN_KEY and cfg.kind in ONLY_FOR.get(k, (cfg.kind,))
    }


def frontend_key(cfg: FeaturesConfig) -> str:
    """Hash of :func:`frontend_params` and :data:`FRONTEND_VERSION`, prefixed with the kind.

    >>> cfg = FeaturesConfig(kind="logmel")
    >>> frontend_key(cfg) == frontend_key(FeaturesConfig(kind="logmel", batch_size=8, n_mfcc=13))
    True
    >>> frontend_key(cfg) == frontend_key(FeaturesConfig(kind="logmel", n_mels=64))
    False
    """
    cfg.require_resolved("store key")
    model = (  # the network, or openSMILE's feature set (its version in its name), is the front-end
        {"model": BIRDNET_MODEL}
        if cfg.kind == "birdnet"
        else {"feature_set": FEATURE_SETS[cfg.kind]}
        if cfg.kind in FEATURE_SETS
        else {}
    )
    blob = json.dumps(
        {**frontend_params(cfg), **model, "version": FRONTEND_VERSION}, sort_keys=True
    ).encode()
    return f"{cfg.kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass(frozen=True)
class StoredEntry:
    """Where one decoded file's segments live: ``rows`` segments from row ``start`` of ``shard``."""

    shard: str
    start: int
    rows: int
    audio_hash: str
    file_sha256: str
    notes: tuple[str, ...] = ()


class FeatureStore:
    """The committed entries of one front-end, and a writer for new ones.

    Args:
        root: the store folder (``features.store_dir``).
        key: :func:`frontend_key` of the front-end.
        shape: (C, F, T) of one segment.
    """

    def __init__(self, root: str | Path, key: str, shape: tuple[int, int, int]):
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(shape)) * 4
        self.by_audio: dict[str, StoredEntry] = {}
        self.by_file: dict[str, StoredEntry] = {}
        self._remove_abandoned()
        for index in sorted(self.dir.glob("*.index.csv")):
            self._load(index)

    def __len__(self) -> int:
        return len(self.by_audio)

    def _load(self, index: Path) -> None:
        shard = index.name[: -len(".index.csv")]
        with open(index, newline="") as fh:
            entries = [
                StoredEntry(
                    shard,
                    int(r["start"]),
                    int(r["rows"]),
                    r["audio_hash"],
                    r["file_sha256"],
                    tuple(filter(None, r["notes"].split("; "))),
                )
                for r in csv.DictReader(fh)
            ]
        data = self.dir / f"{shard}.f32"
        needed = max((e.start + e.rows for e in entries), default=0) * self.row_bytes
        if not data.is_file() or data.stat().st_size < needed:
            return  # damaged by hand (the write order makes this impossible otherwise): ignore the shard
        for e in entries:
            self.add_entry(e)

    def add_entry(self, entry: StoredEntry) -> None:
        """Make a committed entry visible (by audio hash and file sha256; the first one wins)."""
        self.by_audio.setdefault(entry.audio_hash, entry)
        if entry.file_sha256:
            self.by_file.setdefault(entry.file_sha256, entry)

    def _remove_abandoned(self) -> None:
        """Delete what a writer killed on this host left: a temporary shard, or data without an index."""
        for path in self.dir.glob("*.f32*"):
            committed_data = path.suffix == ".f32" and not path.name.startswith(".")
            if path.suffix == ".tmp" or (
                committed_data and not path.with_suffix(".index.csv").exists()
            ):
                host, pid = _writer(path.name.lstrip(".").split(".f32")[0])
                if host == socket.gethostname() and pid is not None and not _alive(pid):
                    path.unlink(missing_ok=True)

    def read(self, entry: StoredEntry) -> np.ndarray:
        """The entry's segments (rows, C, F, T), memory-mapped."""
        return np.memmap(
            self.dir / f"{entry.shard}.f32",
            dtype=np.float32,
            mode="r",
            offset=entry.start * self.row_bytes,
            shape=(entry.rows, *self.shape),
        )

    def copy_to(self, entries: Iterable[StoredEntry], out, uncommitted: dict | None = None) -> int:
        """Append the entries' bytes to ``out``, kernel-side where possible.

        Args:
            entries: what to copy, in order.
            out: a file opened unbuffered for writing (``open(path, "wb", buffering=0)``).
            uncommitted: open files of shards still being committed, by shard name
                (:meth:`ShardWriter.open_uncommitted`); this call closes them.

        Returns:
            The number of rows written.
        """
        total, handles = 0, dict(uncommitted or {})
        try:
            for shard, start, rows in _runs(entries):
                if shard not in handles:
                    handles[shard] = open(self.dir / f"{shard}.f32", "rb")
                _copy_range(handles[shard], out, start * self.row_bytes, rows * self.row_bytes)
                total += rows
        finally:
            for fh in handles.values():
                fh.close()
        return total

    def link_whole(
        self, entries: list[StoredEntry], dst: Path, committed: Callable[[], object]
    ) -> bool:
        """Hard-link ``dst`` to a committed shard if ``entries`` are all of it, in order; False (nothing done) if not.

        The common case of a first run, whose output is exactly the shard it wrote: no
        copy. Committed shards are never written again, so the two names share data
        safely. ``committed`` is called first where the entries are one run from a
        shard's start: it waits for a shard still being committed. False also where
        the filesystem cannot link it there (another filesystem, no hard links): copy instead.
        """
        runs = list(_runs(entries))
        if len(runs) != 1 or runs[0][1] != 0:
            return False
        committed()
        data = self.dir / f"{runs[0][0]}.f32"
        try:
            if data.stat().st_size != runs[0][2] * self.row_bytes:
                return False
            os.link(data, dst)
        except OSError:
            return False
        return True


def _runs(entries: Iterable[StoredEntry]) -> Iterable[tuple[str, int, int]]:
    """(shard, start, rows) ranges, neighbouring entries merged: one copy per contiguous run."""
    run = None
    for e in entries:
        if run and run[0] == e.shard and run[1] + run[2] == e.start:
            run[2] += e.rows
            continue
        if run:
            yield tuple(run)
        run = [e.shard, e.start, e.rows]
    if run:
        yield tuple(run)


def _writer(shard: str) -> tuple[str, int | None]:
    """(host, pid) of the process that named a shard ``<stamp>-<host>-<pid>-<token>``."""
    stamp_host, pid, _ = (["", "", ""] + shard.rsplit("-", 2))[-3:]
    return stamp_host.split("-", 1)[-1], int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _copy_range(src, dst, offset: int, count: int) -> None:
    """Copy ``count`` bytes at ``offset`` of ``src`` to the position of unbuffered ``dst``."""
    while count > 0:
        try:
            done = os.copy_file_range(src.fileno(), dst.fileno(), count, offset)
        except OSError:  # not supported across these filesystems: copy through user space,
            src.seek(offset)  # a bounded block at a time (a shard may be 1 GiB)
            done = dst.write(src.read(min(count, COPY_BLOCK)))
        if done == 0:
            raise OSError(f"unexpected end of shard {src.name} at byte {offset}")
        offset, count = offset + done, count - done
