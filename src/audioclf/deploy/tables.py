"""What prediction writes: a per-window CSV, Raven selection tables, Audacity labels, a per-file summary.

Times are computed from sample counts (``start / sample_rate``, never summed), so window
``k`` begins at ``k * hop`` samples exactly after hours of audio; they are written with six
decimals (a microsecond, below one sample at any audio rate). A window contributes its
``top_k`` labels whose score is at least ``min_score``: by default :data:`MIN_SCORE`, so the
tables list detections, not every window (``min_score`` 0 lists every window's top labels).

* ``windows.csv``: file, start_s, end_s, label, score, rank, fill (``pad``/``repeat`` on a last,
  partial window; empty otherwise).
* Raven selection tables (tab-separated, Raven's standard columns ``Selection``, ``View``,
  ``Channel``, ``Begin Time (s)``, ``End Time (s)``, ``Low Freq (Hz)``, ``High Freq (Hz)``, then
  ``Label``, ``Score``, ``Rank``): one per recording, or one for all with ``Begin Path`` and
  ``File Offset (s)``, times running on across the files in order, as Raven lays out a file list.
* Audacity labels (``start<TAB>end<TAB>label score``), one file per recording.
* ``summary.csv``: per file its top labels by maximum window score, with the mean score;
  ``failed.csv``: every input that could not be decoded and why.
* ``embeddings/<file>.parquet`` (when asked for): each window's penultimate-layer vector.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audioclf.io import atomic_path, process_alive

if TYPE_CHECKING:  # the tables import no torch: audioclf predict --help answers at once
    from audioclf.deploy.predictor import Recording

# a label is a detection when it takes at least half of its window's probability (softmax
# scores: at most one label per window passes); windows of background spread theirs over the labels
MIN_SCORE = 0.5
WINDOW_COLUMNS = ("file", "start_s", "end_s", "label", "score", "rank", "fill")
SUMMARY_COLUMNS = ("file", "duration_s", "windows", "rank", "label", "max_score", "mean_score")
RAVEN_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Label",
    "Score",
    "Rank",
)
RAVEN_COMBINED = ("Begin Path", "File Offset (s)")
RAVEN_MODES = ("per-file", "combined", "none")
TEMPORARY = ".tmp-"  # a per-recording output being written: .<name>.tmp-<pid>


def seconds(samples: int | np.integer, rate: int) -> str:
    """A sample count as seconds with six decimals.

    >>> seconds(3600 * 22050 + 1, 22050)
    '3600.000045'
    """
    return f"{int(samples) / rate:.6f}"


def detections(rec: Recording, labels: list[str], top_k: int, min_score: float) -> list[tuple]:
    """(window, rank, label, score) of every window's ``top_k`` labels scoring at least ``min_score``."""
    if rec.probs is None:
        return []
    order = np.argsort(-rec.probs, axis=1, kind="stable")[:, :top_k]  # (W, k)
    return [
        (w, rank + 1, labels[c], float(rec.probs[w, c]))
        for w in range(len(order))
        for rank, c in enumerate(order[w])
        if rec.probs[w, c] >= min_score
    ]


def window_rows(rec: Recording, labels: list[str], top_k: int, min_score: float) -> list[dict]:
    """The ``windows.csv`` rows of one recording."""
    rate = rec.sample_rate
    return [
        {
            "file": rec.name,
            "start_s": seconds(rec.starts[w], rate),
            "end_s": seconds(rec.stops[w], rate),
            "label": label,
            "score": f"{score:.6f}",
            "rank": rank,
            "fill": rec.fills[w],
        }
        for w, rank, label, score in detections(rec, labels, top_k, min_score)
    ]


def summary_rows(rec: Recording, labels: list[str], top_k: int) -> list[dict]:
    """The ``summary.csv`` rows of one recording: its ``top_k`` labels by maximum window score."""
    if rec.probs is None:
        return []
    peak, mean = rec.probs.max(axis=0), rec.probs.mean(axis=0)  # (C,)
    order = np.argsort(-peak, kind="stable")[:top_k]
    return [
        {
            "file": rec.name,
            "duration_s": f"{rec.duration_s:.6f}",
            "windows": len(rec.starts),
            "rank": rank + 1,
            "label": labels[c],
            "max_score": f"{peak[c]:.6f}",
            "mean_score": f"{mean[c]:.6f}",
        }
        for rank, c in enumerate(order)
    ]


def raven_rows(
    rec: Recording,
    labels: list[str],
    band: tuple[float, float],
    top_k: int,
    min_score: float,
    *,
    offset: int | None = None,
) -> list[list[str]]:
    """Raven selection rows of one recording (without the Selection number, added on writing).

    With ``offset`` (samples before this recording in a combined table), times run on from it and
    the row also holds ``Begin Path`` and ``File Offset (s)``.
    """
    rate, rows = rec.sample_rate, []
    for w, rank, label, score in detections(rec, labels, top_k, min_score):
        shift = offset or 0
        row = [
            "Spectrogram 1",
            "1",
            seconds(rec.starts[w] + shift, rate),
            seconds(rec.stops[w] + shift, rate),
            f"{band[0]:.1f}",
            f"{band[1]:.1f}",
            label,
            f"{score:.6f}",
            str(rank),
        ]
        if offset is not None:
            row += [rec.name, seconds(rec.starts[w], rate)]
        rows.append(row)
    return rows


def frequency_band(
    f_min: float, f_max: float | None, model_rate: int, file_rate: int | None = None
) -> tuple[float, float]:
    """The band a Raven selection spans: the model's mel band, within the Nyquist frequency of the
    model's rate and of the recording's own rate (a 16-kHz file resampled up holds nothing above
    8 kHz).

    >>> frequency_band(0.0, None, 22050, 16000), frequency_band(50.0, 20000.0, 22050)
    ((0.0, 8000.0), (50.0, 11025.0))
    """
    nyquist = min(model_rate, file_rate or model_rate) / 2
    high = min(f_max or nyquist, nyquist)
    return min(f_min, high), high


@contextlib.contextmanager
def written(path: Path) -> Iterator[Path]:
    """A temporary sibling of a per-recording output, renamed over ``path`` if the block succeeds.

    Unlike :func:`audioclf.io.atomic_path` it does not list the folder for the temporaries of
    killed writers on every call (with thousands of recordings in a folder, that listing cost
    more than the prediction); :func:`remove_temporaries` does it once per run.
    """
    tmp = path.with_name(f".{path.name}{TEMPORARY}{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_temporaries(folder: Path) -> int:
    """Remove what killed writers left of :func:`written` below ``folder``; returns how many."""
    removed = 0
    for path in folder.rglob(f".*{TEMPORARY}*"):
        pid = path.name.rpartition(TEMPORARY)[2]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_raven(path: Path, rows: list[list[str]], combined: bool = False) -> None:
    with written(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(RAVEN_COLUMNS + (RAVEN_COMBINED if combined else ()))
        writer.writerows([str(i), *row] for i, row in enumerate(rows, start=1))


def write_audacity(
    path: Path, rec: Recording, labels: list[str], top_k: int, min_score: float
) -> None:
    rate = rec.sample_rate
    with written(path) as tmp, open(tmp, "w") as fh:
        for w, _, label, score in detections(rec, labels, top_k, min_score):
            fh.write(
                f"{seconds(rec.starts[w], rate)}\t{seconds(rec.stops[w], rate)}\t{label} {score:.3f}\n"
            )


def write_embeddings(path: Path, rec: Recording, model_id: str) -> None:
    """A recording's window embeddings as Parquet: one row per window (``file``, ``start_s``,
    ``end_s``, ``model_id``, ``embedding`` a fixed-size list of float32)."""
    import pyarrow as pa  # only with --embeddings
    import pyarrow.parquet as pq

    vectors = np.ascontiguousarray(rec.embeddings, dtype=np.float32)  # (W, D)
    n, dims = vectors.shape
    rate = rec.sample_rate
    table = pa.table(
        {
            "file": pa.array([rec.name] * n, pa.string()),
            "start_s": pa.array(rec.starts / rate, pa.float64()),
            "end_s": pa.array(rec.stops / rate, pa.float64()),
            "model_id": pa.array([model_id] * n, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dims),
        }
    )
    with written(path) as tmp:
        pq.write_table(table, tmp)


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def output_names(files: list[str]) -> dict[str, Path]:
    """Each input file's name for its own tables: its path below the inputs' common folder, less
    the extension (kept where two inputs would otherwise share a name). Never absolute, never ``..``.

    >>> {k: str(v) for k, v in output_names(["a/x.wav", "a/b/y.wav", "a/x.flac"]).items()}
    {'a/x.wav': 'x.wav', 'a/b/y.wav': 'b/y', 'a/x.flac': 'x.flac'}
    """
    resolved = {f: Path(os.path.abspath(f)) for f in files}
    root = Path(os.path.commonpath([p.parent for p in resolved.values()])) if files else Path()
    rel = {f: p.relative_to(root) for f, p in resolved.items()}
    stems = collections.Counter(r.with_suffix("") for r in rel.values())
    return {f: r.with_suffix("") if stems[r.with_suffix("")] == 1 else r for f, r in rel.items()}


def inside(out_dir: Path, path: Path) -> Path:
    """``path``, after checking that it lies inside ``out_dir`` (no output is written elsewhere)."""
    resolved, root = path.resolve(), out_dir.resolve()
    if root not in resolved.parents:
        raise ValueError(f"output {path} would lie outside {out_dir}")
    return path
