"""Writing new entries to the feature store: shards written whole, committed in order, or never seen.

A shard's data goes to ``.<shard>.f32.tmp``, is flushed to disk and renamed to
``<shard>.f32``, and only then is its index written (atomically): the index is the
proof that its entries are complete (see :mod:`audioclf.features.store`). Shard names
carry the host and process id, so a later run knows a writer that died.
"""

from __future__ import annotations

import csv
import os
import secrets
import socket
import time
from collections.abc import Iterable

import numpy as np

from audioclf.features.store import INDEX_COLUMNS, SHARD_BYTES, FeatureStore, StoredEntry
from audioclf.io import atomic_path


class ShardWriter:
    """Appends entries to new shards; each shard is committed when full and on a clean exit.

    Use as a context manager: if the block raises, the shard being written is deleted
    and none of its entries is ever seen; shards committed before stay valid. Or call
    :meth:`close` (or :meth:`discard`) yourself, for example from another thread.
    """

    def __init__(self, store: FeatureStore, shard_bytes: int = SHARD_BYTES):
        self.store, self.shard_bytes = store, shard_bytes
        self.committed = 0  # entries published by this writer
        self._fh = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def close(self) -> None:
        """Commit the current shard; if that fails, delete it (nothing is published) and raise."""
        try:
            self.commit()
        except BaseException:
            self.discard()
            raise

    def _open(self) -> None:
        self._name = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._tmp = self.store.dir / f".{self._name}.f32.tmp"
        self._fh = open(self._tmp, "wb")
        self._pending: list[StoredEntry] = []
        self._rows = 0

    def add(
        self, feats: np.ndarray, *, audio_hash: str, file_sha256: str, notes: Iterable[str] = ()
    ) -> StoredEntry:
        """Append one file's segments (rows, C, F, T) float32; visible to readers after the commit."""
        if feats.shape[1:] != self.store.shape or feats.dtype != np.float32:
            raise ValueError(
                f"segments must be float32 (rows, {', '.join(map(str, self.store.shape))}), "
                f"got {feats.dtype} {feats.shape}"
            )
        if self._fh is None:
            self._open()
        entry = StoredEntry(
            self._name, self._rows, len(feats), audio_hash, file_sha256, tuple(notes)
        )
        self._fh.write(np.ascontiguousarray(feats).data)
        self._rows += len(feats)
        self._pending.append(entry)
        if self._rows * self.store.row_bytes >= self.shard_bytes:
            self.commit()
        return entry

    def commit(self) -> None:
        """Publish the current shard: data flushed and renamed first, then its index."""
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self._tmp, self.store.dir / f"{self._name}.f32")
        with (
            atomic_path(self.store.dir / f"{self._name}.index.csv") as tmp,
            open(tmp, "w", newline="") as fh,
        ):
            writer = csv.writer(fh)
            writer.writerow(INDEX_COLUMNS)
            writer.writerows(
                (e.audio_hash, e.file_sha256, e.start, e.rows, "; ".join(e.notes))
                for e in self._pending
            )
        for e in self._pending:
            self.store.add_entry(e)
        self.committed += len(self._pending)

    def discard(self) -> None:
        """Delete the shard being written, if any: none of its entries is ever seen."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)
