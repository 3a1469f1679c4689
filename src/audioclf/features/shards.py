"""Writing new entries to the feature store: shards written whole, committed in order, or never seen.

A shard's data goes to ``.<shard>.f32.tmp``, is flushed to disk and renamed to
``<shard>.f32``, and only then is its index written (atomically): the index is the
proof that its entries are complete (see :mod:`audioclf.features.store`). Shard names
carry the host and process id, so a later run knows a writer that died.

While a shard is written, its data already goes to the disk in the background
(:class:`Writeback`), so the commit's ``fsync`` waits for the last few megabytes only.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable

import numpy as np

from audioclf.features.store import INDEX_COLUMNS, SHARD_BYTES, FeatureStore, StoredEntry
from audioclf.io import atomic_path

WRITEBACK_BYTES = 16 << 20  # data appended to a shard between background flushes to the disk


class Writeback:
    """``os.fdatasync`` of a file, in a thread of its own, while another thread appends to it.

    The kernel otherwise keeps a fresh shard's pages in memory until the commit's ``fsync``,
    which then waits for all of them (~40 ms for the 84 MB of 1 000 clips here). :meth:`start`
    begins a flush unless one is running; :meth:`wait` ends it and raises what it raised:
    a write error the flush reported would not be reported again to the commit's ``fsync``.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._flush, name="shard-writeback", daemon=True)
        self._thread.start()

    def _flush(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            self._error = self._error or exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


class ShardWriter:
    """Appends entries to new shards; each shard is committed when full and on a clean exit.

    Use as a context manager: if the block raises, the shard being written is deleted
    and none of its entries is ever seen; shards committed before stay valid. Or call
    :meth:`close` (or :meth:`discard`) yourself, for example from another thread.
    """

    def __init__(
        self,
        store: FeatureStore,
        shard_bytes: int = SHARD_BYTES,
        writeback_bytes: int = WRITEBACK_BYTES,
    ):
        self.store, self.shard_bytes, self.writeback_bytes = store, shard_bytes, writeback_bytes
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

    def open_uncommitted(self) -> dict:
        """The current shard's data, flushed and opened for reading, by shard name ({} if none).

        The open file stays valid whether the shard is later committed (renamed) or
        discarded, so the entries just written can be read while :meth:`close` runs
        (its ``fsync`` waits on the disk).
        """
        if self._fh is None:
            return {}
        self._fh.flush()
        return {self._name: open(self._tmp, "rb")}

    def _open(self) -> None:
        self._name = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._tmp = self.store.dir / f".{self._name}.f32.tmp"
        self._fh = open(self._tmp, "wb")
        self._writeback, self._unflushed = Writeback(self._fh.fileno()), 0
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
        self._unflushed += self._fh.write(np.ascontiguousarray(feats).data)
        self._rows += len(feats)
        self._pending.append(entry)
        if self._rows * self.store.row_bytes >= self.shard_bytes:
            self.commit()
        elif self._unflushed >= self.writeback_bytes:
            self._fh.flush()  # what the file object still buffers reaches the kernel, then the disk
            self._writeback.start()
            self._unflushed = 0
        return entry

    def commit(self) -> None:
        """Publish the current shard: data flushed and renamed first, then its index."""
        if self._fh is None:
            return
        self._writeback.wait()
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
            with contextlib.suppress(
                OSError
            ):  # the shard is deleted: its write errors don't matter
                self._writeback.wait()  # the flush still uses the file's descriptor
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)
