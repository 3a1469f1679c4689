"""``audioclf predict``: a trained model over files, folders or globs of recordings, to tables.

Writes under ``--out`` (default ``predictions/``): ``windows.csv``, ``summary.csv``,
``failed.csv``, Raven selection tables (``raven/<file>.selections.txt``, or one
``selections.txt`` with ``--raven combined``) and Audacity labels
(``audacity/<file>.labels.txt``); see :mod:`audioclf.deploy.tables`. Every table is written
as recordings finish, each file atomically, so memory stays flat in the number of inputs.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import soundfile as sf
from tqdm import tqdm

from audioclf.cli import parser
from audioclf.deploy import tables
from audioclf.errors import MissingInputError, UserError
from audioclf.features.audio import EXPECTED_FORMATS
from audioclf.features.stream import decoded_blocks
from audioclf.io import atomic_path, repo_root

if TYPE_CHECKING:
    from audioclf.deploy.model import AudioModel
    from audioclf.deploy.predictor import Recording

log = logging.getLogger(__name__)
AUDIO_EXTENSIONS = tuple(sorted(EXPECTED_FORMATS))
BACKENDS = ("torch", "onnxruntime")


def find_inputs(patterns: list[str], extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[str]:
    """Audio files named by files, folders (searched recursively) or glob patterns, each once, in order."""
    found: dict[str, None] = {}
    for pattern in patterns:
        path = Path(pattern)
        matches = (
            [path]
            if path.exists()
            else [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
        )
        if not matches:
            raise MissingInputError(
                f"no file or folder matches {pattern!r}: check the path or the glob"
            )
        for match in matches:
            if match.is_dir():
                files = sorted(
                    p for p in match.rglob("*") if p.is_file() and p.suffix.lower() in extensions
                )
            else:
                files = [match]
            found.update((str(f), None) for f in files)
    if not found:
        raise MissingInputError(
            f"no audio files ({', '.join(extensions)}) in {', '.join(patterns)}"
        )
    return list(found)


def audio_seconds(files: list[str]) -> float:
    """Total length of the files that have a readable header (for the progress bar only)."""
    total = 0.0
    for f in files:
        with contextlib.suppress(Exception):
            total += sf.info(f).duration
    return total


class Writer:
    """The tables of one run, each written atomically and published when the run ends."""

    def __init__(self, out_dir: Path, model: AudioModel, files: list[str], args) -> None:
        self.out, self.labels, self.args = out_dir, model.labels, args
        cfg = model.features
        self.band = (cfg.f_min, cfg.f_max or cfg.sample_rate / 2)
        self.names = tables.output_names(files)
        self.stack = contextlib.ExitStack()
        self.windows = self._csv("windows.csv", tables.WINDOW_COLUMNS)
        self.summary = self._csv("summary.csv", tables.SUMMARY_COLUMNS)
        self.failed = self._csv("failed.csv", ("file", "reason"))
        self.raven: list[list[str]] = []
        self.offset = 0

    def _csv(self, name: str, columns) -> csv.DictWriter:
        fh = open(self.stack.enter_context(atomic_path(self.out / name)), "w", newline="")
        self.stack.callback(fh.close)
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        return writer

    def add(self, rec: Recording) -> None:
        a = self.args
        if rec.error is not None:  # the reason is clean of terminal escapes (predictor.clean)
            self.failed.writerow({"file": rec.name, "reason": rec.error})
            return
        self.windows.writerows(tables.window_rows(rec, self.labels, a.top_k, a.min_score))
        self.summary.writerows(tables.summary_rows(rec, self.labels, a.top_k))
        name = self.names[rec.name]
        if a.raven == "per-file":
            rows = tables.raven_rows(rec, self.labels, self.band, a.top_k, a.min_score)
            tables.write_raven(self._path("raven", name, ".selections.txt"), rows)
        elif a.raven == "combined":
            self.raven += tables.raven_rows(
                rec, self.labels, self.band, a.top_k, a.min_score, offset=self.offset
            )
            self.offset += rec.samples
        if a.audacity:
            path = self._path("audacity", name, ".labels.txt")
            tables.write_audacity(path, rec, self.labels, a.top_k, a.min_score)

    def _path(self, folder: str, name: Path, suffix: str) -> Path:
        path = tables.inside(self.out, self.out / folder / f"{name}{suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        # publishes windows.csv, summary.csv and failed.csv, unless failing
        self.stack.__exit__(*exc)
        if exc[0] is None and self.args.raven == "combined":
            tables.write_raven(self.out / "selections.txt", self.raven, combined=True)


def predict_files(model: AudioModel, files: list[str], out_dir: Path, args) -> dict:
    """Predict every file, write the tables; returns counts, audio-seconds, wall time and timings."""
    from audioclf.deploy.predictor import Timings, clean, predict_recordings

    out_dir.mkdir(parents=True, exist_ok=True)
    writer, timings = Writer(out_dir, model, files, args), Timings()
    sources = [(f, lambda rate, f=f: decoded_blocks(f, rate)) for f in files]
    counts = {"files": len(files), "predicted": 0, "failed": 0, "audio_s": 0.0}
    start = time.perf_counter()
    total = audio_seconds(files)
    with writer, tqdm(total=round(total, 1), unit="s", desc="audio", disable=None) as bar:
        for rec in predict_recordings(
            model,
            sources,
            overlap_s=args.overlap,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=bar.update,
            timings=timings,
        ):
            writer.add(rec)
            if rec.error is None:
                counts["predicted"] += 1
                counts["audio_s"] += rec.duration_s
            else:
                counts["failed"] += 1
                log.warning("predict: %s: %s (skipped)", clean(rec.name), rec.error)
            bar.set_postfix(files=f"{counts['predicted'] + counts['failed']}/{len(files)}")
    wall = time.perf_counter() - start
    return {**counts, "windows": timings.windows, "wall_s": wall, "timings": vars(timings)}


def main(argv: list[str] | None = None) -> dict:
    """``audioclf predict INPUT... [--model ...] [--out predictions]``; see ``--help``."""
    ap = parser(__doc__, prog="audioclf predict")
    ap.add_argument("inputs", nargs="+", help="audio files, folders (recursive) or glob patterns")
    ap.add_argument(
        "--model",
        default="models",
        help="checkpoint (.pt), models/ folder (its best fold "
        "by validation macro-F1), MLflow Model folder, models:/<name>/<version> or runs:/<id>/model",
    )
    ap.add_argument(
        "--split", type=Path, default=Path("data/split"), help="names the folds of a models/ folder"
    )
    ap.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    ap.add_argument(
        "--overlap", type=float, default=0.0, help="seconds shared by consecutive windows"
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per front-end and network call (default: 16)",
    )
    ap.add_argument("--workers", type=int, default=0, help="threads (0: one per core)")
    ap.add_argument(
        "--min-score", type=float, default=0.0, help="write labels scoring at least this"
    )
    ap.add_argument(
        "--top-k", type=int, default=1, help="labels per window (and per file in the summary)"
    )
    ap.add_argument(
        "--raven", choices=tables.RAVEN_MODES, default="per-file", help="Raven selection tables"
    )
    ap.add_argument(
        "--no-audacity", dest="audacity", action="store_false", help="no Audacity label files"
    )
    ap.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="runs the network: torch, or ONNX Runtime (exported on the spot, checked against torch)",
    )
    args = ap.parse_args(argv)
    if args.top_k < 1 or not 0 <= args.min_score <= 1:
        raise UserError(
            f"--top-k must be >= 1 and --min-score in [0, 1], got {args.top_k} and {args.min_score}"
        )
    files = find_inputs(args.inputs)
    # torch loads only now: --help and a bad argument answer at once
    from audioclf.deploy.export import use_onnxruntime
    from audioclf.deploy.model import is_model_uri, load_model
    from audioclf.deploy.predictor import BATCH_SIZE, check_batch_size

    check_batch_size(BATCH_SIZE if args.batch_size is None else args.batch_size)
    if args.batch_size is None:
        args.batch_size = BATCH_SIZE
    store = None
    if is_model_uri(args.model):
        from audioclf.tracking import resolve_store  # imports MLflow: only for a model URI

        store = resolve_store(repo_root()).uri
    model = load_model(args.model, split_dir=args.split, tracking_uri=store)
    with tempfile.TemporaryDirectory(prefix="audioclf-predict-") as tmp:
        if args.backend == "onnxruntime":
            threads = max(1, (args.workers or len(os.sched_getaffinity(0))) - 1)
            model = use_onnxruntime(model, threads, Path(tmp))
        return _run(model, files, args)


def _run(model: AudioModel, files: list[str], args) -> dict:
    log.info(
        "predict: %d file(s) with %s (%s, %d labels)",
        len(files),
        model.source,
        model.checkpoint["model_name"],
        len(model.labels),
    )
    result = predict_files(model, files, args.out, args)
    if not result["predicted"]:
        raise UserError(
            f"none of the {len(files)} input(s) could be decoded: see {args.out / 'failed.csv'}"
        )
    log.info(
        "predict: %d file(s), %.0f audio-s in %.1f s (%.0fx real time) -> %s; %d failed",
        result["predicted"],
        result["audio_s"],
        result["wall_s"],
        result["audio_s"] / max(result["wall_s"], 1e-9),
        args.out,
        result["failed"],
    )
    return result
