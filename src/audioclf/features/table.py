"""The feature table: the folder the ``features`` stage outputs (``data/features``), and reading it.

Three files:

* ``features.f32`` -- every segment, contiguous float32 of shape (S, C, F, T), read
  with ``np.memmap`` (C = 1 for log-mel, 3 for MFCC with delta and delta-delta);
* ``index.csv`` -- one line per segment: row, path, label, group, segment, start_s
  (all segments of a recording carry its file and group);
* ``meta.json`` -- shape, class list, the front-end params and their key.

It holds every decodable file of the manifest, whatever the split, so a new split or
model never recomputes it. It is assembled from the shared, content-addressed store
(:mod:`audioclf.features.store`) by :func:`audioclf.features.extract.extract_features`.
:class:`FeatureTable` reads it; :func:`load_split` serves one split's segments,
normalised, in batches.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audioclf.errors import MissingInputError

DATA_FILE, INDEX_FILE, META_FILE = "features.f32", "index.csv", "meta.json"
INDEX_COLUMNS = ("row", "path", "label", "group", "segment", "start_s")


@dataclass(frozen=True)
class Row:
    """One segment: its file, label and group, its number within the file and start time (s)."""

    path: str
    label: str
    group: str
    segment: int
    start_s: float = 0.0


def write_index(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(INDEX_COLUMNS)
        writer.writerows(
            (i, r.path, r.label, r.group, r.segment, r.start_s) for i, r in enumerate(rows)
        )


class FeatureTable:
    """Read access to the features stage's output: memory-mapped segments plus their index.

    Attributes:
        data: memmap (S, C, F, T) float32.
        rows: the :class:`Row` of each segment.
        labels: class names; a label's index is its class id.
        in_channels: C, the input channels of a model reading this cache.
    """

    def __init__(self, cache_dir: str | Path):
        cache_dir = Path(cache_dir)
        if not (cache_dir / META_FILE).is_file():
            raise MissingInputError(f"no feature table at {cache_dir} (run: dvc repro features)")
        self.meta = json.loads((cache_dir / META_FILE).read_text())
        self.labels: list[str] = self.meta["labels"]
        with open(cache_dir / INDEX_FILE, newline="") as fh:
            self.rows = [
                Row(r["path"], r["label"], r["group"], int(r["segment"]), float(r["start_s"]))
                for r in csv.DictReader(fh)
            ]
        shape = tuple(self.meta["shape"])
        if len(shape) != 4 or shape[0] != len(self.rows):
            raise ValueError(
                f"feature table {cache_dir} has shape {list(shape)} for {len(self.rows)} index rows; "
                "expected (segments, channels, bands, frames): rerun dvc repro features"
            )
        # a zero-length memmap is not allowed; an empty cache has no rows to read anyway
        self.data = (
            np.memmap(cache_dir / DATA_FILE, dtype=np.float32, mode="r", shape=shape)
            if shape[0]
            else np.zeros(shape, dtype=np.float32)
        )
        self._label_ix = {name: i for i, name in enumerate(self.labels)}

    @property
    def in_channels(self) -> int:
        return int(self.meta["shape"][1])

    @property
    def frontend_key(self) -> str:
        return self.meta["frontend_key"]

    @property
    def kind(self) -> str:
        """The front-end's kind (``logmel``, ``fbank``, ``birdnet``, ...)."""
        return self.meta["frontend"]["kind"]

    @property
    def encoder_layer(self) -> int | str:
        """The encoder's layer of ``hf`` features (``all``: every layer, as channels); -1 otherwise."""
        return self.meta["frontend"].get("encoder_layer", -1)

    def indices(self, paths: list[str]) -> np.ndarray:
        """Rows (in cache order) of all segments of the given files; files not in the cache are skipped."""
        wanted = set(paths)
        return np.array([i for i, r in enumerate(self.rows) if r.path in wanted], dtype=np.int64)

    def targets(self, idx: np.ndarray) -> np.ndarray:
        """Class ids (S,) int64 of the given rows."""
        return np.array([self._label_ix[self.rows[i].label] for i in idx], dtype=np.int64)

    def select(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray, list[Row]]:
        """All segments of the given files, read into memory (for small selections).

        Returns:
            features (S, C, F, T) float32, label indices (S,) int64, and the rows.
        """
        idx = self.indices(paths)
        return np.asarray(self.data[idx]), self.targets(idx), [self.rows[i] for i in idx]


def stat_tensor(stat: float | list) -> torch.Tensor:
    """A normalisation statistic -- scalar, per channel (C,) or per band (C, F) -- as a float32
    tensor broadcastable to features (C, F, T) and batches (B, C, F, T)."""
    t = torch.tensor(stat, dtype=torch.float32)
    while 0 < t.dim() < 3:
        t = t.unsqueeze(-1)
    return t


@dataclass
class SplitData:
    """One split's segments, read from the feature table on demand and normalised.

    Attributes:
        table: the feature table; nothing is read until :meth:`batch`.
        rows: (S,) table row of each segment.
        y: (S,) class ids.
        paths: the file of each segment.
        mean, std: normalisation, broadcastable to (C, F, T); for per-group statistics
            (G, C, F, 1), each segment's row chosen by ``group_of``.
        group_of: (S,) the row of ``mean``/``std`` of each segment's group, or None.
    """

    table: FeatureTable
    rows: np.ndarray
    y: torch.Tensor
    paths: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    group_of: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Normalised features (B, C, F, T) of the segments at positions ``idx`` of this split."""
        idx = np.asarray(idx)
        x = torch.from_numpy(np.asarray(self.table.data[self.rows[idx]]))  # (B, C, F, T)
        if self.group_of is None:
            return (x - self.mean) / self.std
        g = torch.from_numpy(self.group_of[idx])
        return (x - self.mean[g]) / self.std[g]  # each segment by its group's (B, C, F, 1)

    def prefetched(
        self, batches: list[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """(idx, x, seconds waited for x) per batch; batch k+1 is read from the table while k is used."""
        with ThreadPoolExecutor(1) as reader:
            future = reader.submit(self.batch, batches[0]) if batches else None
            for k, idx in enumerate(batches):
                start = time.perf_counter()
                x = future.result()
                waited = time.perf_counter() - start
                if k + 1 < len(batches):
                    future = reader.submit(self.batch, batches[k + 1])
                yield idx, x, waited


def load_split(table: FeatureTable, paths: list[str], norm: dict) -> SplitData:
    """The segments of ``paths`` in the table, normalised with ``norm`` as a checkpoint stores it
    (:func:`audioclf.training.data.normalisation`): ``{"mean", "std"}``, or with ``kind: group``
    ``{"groups": {group: {"mean", "std"}}}``, each segment by its own group's.

    Raises:
        ValueError: no file of ``paths`` is in the table, or (group statistics) a segment's
            group has none.
    """
    rows = table.indices(paths)
    if len(rows) == 0:
        raise ValueError(
            "none of the split's files are in the feature table (did every file fail to decode?)"
        )
    group_of = None
    if norm.get("kind") == "group":
        stats = norm["groups"]
        names = sorted({table.rows[i].group for i in rows})
        unknown = [g for g in names if g not in stats]
        if unknown:
            raise ValueError(
                f"group(s) {unknown[:5]} have no statistics in the checkpoint (train.norm: group "
                "takes them from the feature table it trained on); rerun training (dvc repro train)"
            )
        at = {g: k for k, g in enumerate(names)}
        group_of = np.array([at[table.rows[i].group] for i in rows], dtype=np.int64)
        mean, std = (
            torch.tensor([stats[g][k] for g in names], dtype=torch.float32).unsqueeze(-1)
            for k in ("mean", "std")
        )  # (G, C, F, 1)
    else:
        mean, std = (stat_tensor(norm[k]) for k in ("mean", "std"))
    return SplitData(
        table,
        rows,
        torch.from_numpy(table.targets(rows)),
        [table.rows[i].path for i in rows],
        mean,
        std,
        group_of,
    )
