"""A persistent, content-addressed store of feature segments, shared by every experiment.

Layout under ``<store_dir>/<frontend key>/``::

    <shard>.f32          segments of many files, contiguous float32 (rows, C, F, T)
    <shard>.index.csv    one line per file: audio hash, file sha256, first row, rows, notes
    .<shard>.f32.tmp     a shard being written (never read)

An entry is keyed by the decoded audio's hash (sha256) within a directory keyed by the
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
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.config.features import ENCODER_RESOLVED, VECTOR_KINDS, FeaturesConfig
from audioclf.features.birdnet import MODEL_NAME as BIRDNET_MODEL
from audioclf.features.opensmile import FEATURE_SETS
from audioclf.io import process_alive

# bump when decoding, the audio hash or a front-end changes numerically: old entries then miss
FRONTEND_VERSION = 6
# fields of FeaturesConfig that do not change the features (how, where and how many)
NOT_IN_KEY = ("batch_size", "workers", "device", "store_dir", "min_coverage")
SPECTRAL_KINDS = ("logmel", "mfcc", "imagenet")  # the log-mel and what is made of it
# fields that shape only some kinds' features (in no other kind's key: a logmel key is as before)
ONLY_FOR = {
    "n_mfcc": ("mfcc",),
    "delta_width": ("mfcc",),
    "image_size": ("imagenet",),
    "embedding_pool": VECTOR_KINDS,
    **{
        f: ("hf",)
        for f in (
            "encoder",
            "encoder_revision",
            "encoder_layer",
            "encoder_depth",
            *ENCODER_RESOLVED,
        )
    },
    "top_db": SPECTRAL_KINDS,
    "highpass_order": SPECTRAL_KINDS,
    **{f: (*SPECTRAL_KINDS, "fbank") for f in ("n_fft", "hop_length", "n_mels", "f_min", "f_max")},
}
# recorded with the features but left out of the key: fixed by what is in it (the encoder's depth by
# its weights' sha256), so the entries made before it was recorded keep their key
IMPLIED = ("encoder_depth",)
INDEX_COLUMNS = ("audio_hash", "file_sha256", "start", "rows", "notes")
# an interrupted run loses at most one shard of work (~2 800 4-s log-mel segments)
SHARD_BYTES = 256 << 20


def frontend_params(cfg: FeaturesConfig) -> dict:
    """The params that shape the features: all but :data:`NOT_IN_KEY`, and of the :data:`ONLY_FOR`
    fields only those of ``cfg.kind`` (the MFCC ones only for ``mfcc``, ...)."""
    return {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in NOT_IN_KEY and cfg.kind in ONLY_FOR.get(k, (cfg.kind,))
    }


def frontend_key(cfg: FeaturesConfig) -> str:
    """Hash of :func:`frontend_params` (less :data:`IMPLIED`) and :data:`FRONTEND_VERSION`,
    prefixed with the kind.

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
    shaping = {k: v for k, v in frontend_params(cfg).items() if k not in IMPLIED}
    blob = json.dumps({**shaping, **model, "version": FRONTEND_VERSION}, sort_keys=True).encode()
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
                if host == socket.gethostname() and pid is not None and not process_alive(pid):
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

    def copy_to(self, entries: Iterable[StoredEntry], out) -> int:
        """Append the entries' segments to the binary file ``out``, in order; returns the rows written."""
        total, shards = 0, {}
        try:
            for e in entries:
                if e.shard not in shards:
                    shards[e.shard] = open(self.dir / f"{e.shard}.f32", "rb")
                src = shards[e.shard]
                src.seek(e.start * self.row_bytes)
                data = src.read(e.rows * self.row_bytes)
                if len(data) != e.rows * self.row_bytes:
                    raise OSError(f"shard {src.name} ends before row {e.start + e.rows}")
                out.write(data)
                total += e.rows
        finally:
            for fh in shards.values():
                fh.close()
        return total


def _writer(shard: str) -> tuple[str, int | None]:
    """(host, pid) of the process that named a shard ``<stamp>-<host>-<pid>-<token>``."""
    stamp_host, pid, _ = (["", "", ""] + shard.rsplit("-", 2))[-3:]
    return stamp_host.split("-", 1)[-1], int(pid) if pid.isdigit() else None
