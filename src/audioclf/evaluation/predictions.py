"""Per-file test predictions with their class probabilities: ``reports/probabilities.csv``.

The evaluate stage writes one row per test file: ``fold``, ``path``, ``actual`` (the
true class), ``group`` (its recording or speaker: what comparisons resample; files written
before it have none) and one column ``p_<label>`` per class, in the checkpoint's label order,
holding the file's probability (the mean over its segments). Probabilities are float32,
written in their shortest round-trip form, so metrics recomputed from the file equal
those in ``reports/metrics.json`` exactly. Comparisons of two runs read it back with
:func:`parse_probabilities`, which checks every row (a file from another repository
or edited by hand gets a message naming the row and the fix, never a crash in numpy).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.errors import UserError
from audioclf.io import atomic_path

PREFIX = "p_"
KEYS = ("fold", "path", "actual")
GROUP = "group"  # optional, after KEYS: files written before it hold none


class PredictionsError(UserError, ValueError):
    """A probabilities file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class FilePredictions:
    """One run's test predictions, one row per file.

    Attributes:
        paths: (F,) test files, relative to the dataset folder.
        folds: (F,) the fold each file was tested in.
        y_true: (F,) true class indices into ``labels``.
        probs: (F, C) float32 class probabilities.
        labels: the C class names.
        groups: (F,) each file's group (None: a file written without them).
    """

    paths: tuple[str, ...]
    folds: np.ndarray
    y_true: np.ndarray
    probs: np.ndarray
    labels: tuple[str, ...]
    groups: tuple[str, ...] | None = None

    @property
    def correct(self) -> np.ndarray:
        """(F,) whether the top class is the true one."""
        return self.probs.argmax(axis=1) == self.y_true

    def reordered(self, paths: list[str] | tuple[str, ...]) -> FilePredictions:
        """The same predictions with rows in the order of ``paths`` (the same set of files)."""
        index = {p: i for i, p in enumerate(self.paths)}
        rows = np.array([index[p] for p in paths], dtype=np.int64)
        groups = None if self.groups is None else tuple(self.groups[r] for r in rows)
        return FilePredictions(
            tuple(paths), self.folds[rows], self.y_true[rows], self.probs[rows], self.labels, groups
        )


def write_probabilities(
    path: str | Path, predictions: list[dict], probs: np.ndarray, labels: list[str]
) -> None:
    """Write the probabilities file atomically.

    Args:
        path: the CSV to write.
        predictions: one dict per file with ``fold``, ``path``, ``actual`` and, to write the
            ``group`` column, ``group``; in the rows' order.
        probs: (F, C) probabilities in the same order.
        labels: the C class names, the columns' order.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.shape != (len(predictions), len(labels)):
        raise ValueError(
            f"probs must have shape ({len(predictions)}, {len(labels)}), got {probs.shape}"
        )
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        grouped = all(GROUP in row for row in predictions)
        writer.writerow([*KEYS, *([GROUP] if grouped else []), *(PREFIX + lab for lab in labels)])
        for row, p in zip(predictions, probs, strict=True):
            group = [row[GROUP]] if grouped else []
            writer.writerow([row["fold"], row["path"], row["actual"], *group, *map(str, p)])


def parse_probabilities(text: str, source: str) -> FilePredictions:
    """Read a probabilities file's text (``source`` names it in messages).

    Raises:
        PredictionsError: a missing column, a class column not named ``p_<label>``, an
            unknown true class, a probability that is not a number in [0, 1], a file listed
            twice, or no rows.
    """
    fix = "regenerate it with: dvc repro evaluate"
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0][:3]) != KEYS:
        raise PredictionsError(
            f"{source}: the header must start with {','.join(KEYS)}, got {rows[0][:3] if rows else 'nothing'}; {fix}"
        )
    grouped = rows[0][3:4] == [GROUP]
    columns = rows[0][3 + grouped :]
    if len(columns) < 2 or not all(c.startswith(PREFIX) and len(c) > len(PREFIX) for c in columns):
        raise PredictionsError(
            f"{source}: after {','.join(KEYS)} the header needs one {PREFIX}<label> column per class "
            f"(at least two), got {columns[:4]}; {fix}"
        )
    labels = tuple(c[len(PREFIX) :] for c in columns)
    index = {lab: i for i, lab in enumerate(labels)}
    if len(index) != len(labels):
        raise PredictionsError(f"{source}: a class column appears twice in the header; {fix}")
    body = rows[1:]
    if not body:
        raise PredictionsError(f"{source}: no predictions (only a header); {fix}")
    folds, paths, y_true, groups = [], [], [], []
    probs = np.empty((len(body), len(labels)), dtype=np.float32)
    for n, row in enumerate(body, start=2):
        where = f"{source}, line {n}"
        if len(row) != len(rows[0]):
            raise PredictionsError(f"{where}: {len(row)} fields, the header has {len(rows[0])}")
        fold, name, actual, *values = row
        if grouped:
            groups.append(values.pop(0))
        if not fold.isdigit():
            raise PredictionsError(f"{where}: fold must be a number >= 0, got {fold!r}")
        if actual not in index:
            raise PredictionsError(f"{where}: class {actual!r} has no column; {fix}")
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            raise PredictionsError(f"{where}: a probability is not a number; {fix}") from None
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in numbers):
            raise PredictionsError(f"{where}: probabilities must be numbers in [0, 1]; {fix}")
        folds.append(int(fold))
        paths.append(name)
        y_true.append(index[actual])
        probs[n - 2] = numbers
    if len(set(paths)) != len(paths):
        twice = sorted({p for p in paths if paths.count(p) > 1})
        raise PredictionsError(f"{source}: file(s) listed twice: {twice[:3]}; {fix}")
    return FilePredictions(
        tuple(paths),
        np.array(folds),
        np.array(y_true, dtype=np.int64),
        probs,
        labels,
        tuple(groups) if grouped else None,
    )
