"""``audioclf predict``: a trained model over files, folders or globs of recordings, to tables.

Writes under ``--out`` (default ``predictions/``): ``windows.csv``, ``summary.csv``,
``failed.csv``, Raven selection tables (``raven/<file>.selections.txt``, or one
``selections.txt`` with ``--raven combined``) and Audacity labels
(``audacity/<file>.labels.txt``), and with ``--embeddings`` ``embeddings/<file>.parquet``; see
:mod:`audioclf.deploy.tables`. Tables are written as recordings finish (memory stays flat in
the number of inputs): per-recording files atomically, the shared tables appended, with a ledger
that lets a rerun after a kill skip what was finished (:class:`Writer`). ``--shard k/N`` splits
the inputs across the tasks of a job array.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import hashlib
import io
import json
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
    import numpy as np
    import torch

    from audioclf.deploy.model import AudioModel
    from audioclf.deploy.predictor import Recording

log = logging.getLogger(__name__)
AUDIO_EXTENSIONS = tuple(sorted(EXPECTED_FORMATS))
BACKENDS = ("torch", "onnxruntime")
PROGRESS_EVERY_S = 30.0


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
            files = _folder_files(match, extensions) if match.is_dir() else [match]
            found.update((str(f), None) for f in files)
    if not found:
        raise MissingInputError(
            f"no audio files ({', '.join(extensions)}) in {', '.join(patterns)}"
        )
    return list(found)


def _folder_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """The audio files below ``folder``, sorted; a symbolic link that leads outside it is not
    followed (and counted in a warning)."""
    root, files, outside = folder.resolve(), [], 0
    for path in folder.rglob("*"):
        if path.suffix.lower() not in extensions or not path.is_file():
            continue
        if path.is_symlink() and root not in path.resolve().parents:
            outside += 1
            continue
        files.append(path)
    if outside:
        log.warning("predict: %d link(s) in %s lead outside it: not followed", outside, folder)
    return sorted(files)


def audio_seconds(files: list[str]) -> float:
    """Total length of the files that have a readable header (for the progress bar only)."""
    total = 0.0
    for f in files:
        with contextlib.suppress(Exception):
            total += sf.info(f).duration
    return total


class RunMismatch(UserError):
    """An ``--out`` folder holding a run with another model or other settings."""


class Writer:
    """The tables of one run under ``--out``, appended as recordings finish, with a ledger.

    ``ledger.csv`` gets one line per finished input (``done`` or ``failed``) once all its outputs
    are written: its per-file Raven and Audacity files atomically, its rows of the shared tables
    flushed, whose sizes the line records. A rerun with the same ``--out`` (after a kill, say)
    reads the ledger alone: it cuts each shared table back to the sizes of the last complete line
    (dropping the rows of an input that was not finished) and skips every input it lists.
    ``run.json`` holds what the tables depend on (:meth:`settings`); a rerun with another
    model or other settings is refused, naming the difference.
    """

    LEDGER = ("file", "status", "windows", "summary", "failed", "selections", "offset", "number")
    TABLES = {
        "windows": ("windows.csv", tables.WINDOW_COLUMNS),
        "summary": ("summary.csv", tables.SUMMARY_COLUMNS),
        "failed": ("failed.csv", ("file", "reason")),
    }

    def __init__(self, out_dir: Path, model: AudioModel, names: dict[str, Path], args) -> None:
        self.out, self.labels, self.args = out_dir, model.labels, args
        self.features, self.names = model.features, names
        self.checked: set[Path] = set()  # output folders known to lie inside ``out_dir``
        self.settings = settings(model, args)
        self.stack = contextlib.ExitStack()
        tables_ = dict(self.TABLES)
        if args.raven == "combined":
            tables_["selections"] = ("selections.txt", None)
        finished = self._resume()
        tables.remove_temporaries(self.out)  # what a killed run was writing
        last = finished[-1] if finished else {}
        self.done = {row["file"] for row in finished}
        self.offset, self.number = int(last.get("offset") or 0), int(last.get("number") or 0)
        self.files = {
            key: self._open(name, columns, last.get(key))
            for key, (name, columns) in tables_.items()
        }
        self.writers = {
            key: csv.DictWriter(self.files[key], fieldnames=list(cols), lineterminator="\n")
            for key, (_, cols) in self.TABLES.items()
        }
        ledger = self.out / "ledger.csv"
        self.ledger = self.stack.enter_context(open(ledger, "a", newline=""))
        if self.ledger.tell() == 0:
            self.ledger.write(",".join(self.LEDGER) + "\n")
        self.ledger_csv = csv.writer(self.ledger, lineterminator="\n")

    def _resume(self) -> list[dict]:
        """Check ``run.json`` against this run and read the ledger: its complete lines (none
        when the folder is new or holds nothing finished, then made ready for a new run)."""
        self.out.mkdir(parents=True, exist_ok=True)
        meta, ledger = self.out / "run.json", self.out / "ledger.csv"
        if meta.is_file() and ledger.is_file():
            text = ledger.read_text()
            complete = text[: text.rfind("\n") + 1]  # a line cut short by a kill is not complete
            rows = list(csv.DictReader(io.StringIO(complete)))
            if rows:  # a folder with nothing finished is simply started again
                self._check(json.loads(meta.read_text()))
                ledger.write_text(complete)
                return rows
        for name in ("ledger.csv", *(n for n, _ in self.TABLES.values()), "selections.txt"):
            with contextlib.suppress(FileNotFoundError):
                (self.out / name).unlink()
        with atomic_path(meta) as tmp:
            tmp.write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        return []

    def _check(self, before: dict) -> None:
        """Refuse to add to a folder whose run had another model or other settings."""
        keys = sorted(set(before) | set(self.settings))
        if diff := [k for k in keys if before.get(k) != self.settings.get(k)]:
            raise RunMismatch(
                f"{self.out} holds a run with other settings ("
                + "; ".join(
                    f"{k}: {before.get(k)!r} there, {self.settings.get(k)!r} now" for k in diff
                )
                + "): rerun with those settings to complete it, or pass another --out"
            )

    def _open(self, name: str, columns, size: str | None):
        """A shared table opened for appending, cut back to ``size`` bytes (its header if new)."""
        path = self.out / name
        fh = self.stack.enter_context(open(path, "a+", newline=""))
        if size is not None:
            fh.truncate(int(size))
        elif fh.tell() == 0:
            header = list(columns) if columns else [*tables.RAVEN_COLUMNS, *tables.RAVEN_COMBINED]
            fh.write(("\t" if columns is None else ",").join(header) + "\n")
        fh.seek(0, io.SEEK_END)
        return fh

    def add(self, rec: Recording) -> None:
        """Write every output of ``rec``, then its ledger line."""
        status = "failed" if rec.error is not None else "done"
        if rec.error is not None:  # the reason is clean of terminal escapes (predictor.clean)
            self.writers["failed"].writerow({"file": rec.name, "reason": rec.error})
        else:
            self._tables(rec)
        for fh in self.files.values():
            fh.flush()
        sizes = {key: fh.tell() for key, fh in self.files.items()}
        self.ledger_csv.writerow(
            [
                rec.name,
                status,
                sizes["windows"],
                sizes["summary"],
                sizes["failed"],
                sizes.get("selections", ""),
                self.offset,
                self.number,
            ]
        )
        self.ledger.flush()  # the page cache outlives a killed process: no fsync per file
        self.done.add(rec.name)

    def _tables(self, rec: Recording) -> None:
        a = self.args
        self.writers["windows"].writerows(
            tables.window_rows(rec, self.labels, a.top_k, a.min_score)
        )
        self.writers["summary"].writerows(tables.summary_rows(rec, self.labels, a.top_k))
        name, band = self.names[rec.name], self._band(rec.name)
        if a.raven == "per-file":
            rows = tables.raven_rows(rec, self.labels, band, a.top_k, a.min_score)
            tables.write_raven(self._path("raven", name, ".selections.txt"), rows)
        elif a.raven == "combined":
            rows = tables.raven_rows(
                rec, self.labels, band, a.top_k, a.min_score, offset=self.offset
            )
            out = csv.writer(self.files["selections"], delimiter="\t", lineterminator="\n")
            out.writerows([str(self.number + i), *row] for i, row in enumerate(rows, start=1))
            self.offset, self.number = self.offset + rec.samples, self.number + len(rows)
        if a.audacity:
            path = self._path("audacity", name, ".labels.txt")
            tables.write_audacity(path, rec, self.labels, a.top_k, a.min_score)
        if rec.embeddings is not None:
            path = self._path("embeddings", name, ".parquet")
            tables.write_embeddings(path, rec, self.settings["model_id"])

    def _band(self, file: str) -> tuple[float, float]:
        """The Raven band of ``file``: the model's, within the file's own Nyquist frequency."""
        cfg = self.features
        try:
            rate = sf.info(file).samplerate
        except (sf.LibsndfileError, RuntimeError, OSError, TypeError):
            rate = None  # not a file (decoded from elsewhere): the model's rate bounds it
        return tables.frequency_band(cfg.f_min, cfg.f_max, cfg.sample_rate, rate)

    def _path(self, folder: str, name: Path, suffix: str) -> Path:
        path = self.out / folder / f"{name}{suffix}"
        if path.parent not in self.checked:  # resolving costs a system call per component
            tables.inside(self.out, path.parent / path.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.checked.add(path.parent)
        return path

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.stack.__exit__(*exc)


def settings(model: AudioModel, args) -> dict:
    """What a run's tables depend on: the model, its window, and the table settings."""
    cfg = model.features
    return {
        "model_id": model_id(model),
        "sample_rate": cfg.sample_rate,
        "window_s": cfg.segment_samples / cfg.sample_rate,
        "overlap": args.overlap,
        "top_k": args.top_k,
        "min_score": args.min_score,
        "raven": args.raven,
        "audacity": args.audacity,
        "embeddings": args.embeddings,
        "shard": args.shard,
    }


def model_id(model: AudioModel) -> str:
    """The model's name and a digest of its weights, labels and front-end params."""
    digest = hashlib.sha256(
        json.dumps(
            [model.labels, dataclasses.asdict(model.features)], sort_keys=True, default=str
        ).encode()
    )
    if model.classifier is not None:
        for key, tensor in sorted(model.classifier.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        digest.update(str(model.checkpoint.get("sha256", model.source)).encode())
    return f"{model.checkpoint['model_name']}-{digest.hexdigest()[:16]}"


class Progress:
    """Where a run is: a tqdm bar on a terminal; elsewhere (``nohup``, a cluster job's log) a log
    line every ``every`` seconds and one at the end."""

    def __init__(self, n_files: int, audio_s: float, every: float) -> None:
        self.bar = tqdm(total=round(audio_s, 1), unit="s", desc="audio", disable=None)
        self.lines, self.every = self.bar.disable, every
        self.n_files, self.audio_s, self.files, self.failed, self.seconds = (
            n_files,
            audio_s,
            0,
            0,
            0.0,
        )
        self.start = self.last = time.monotonic()

    def audio(self, seconds: float) -> None:
        self.seconds += seconds
        self.bar.update(seconds)

    def file(self, failed: bool) -> None:
        self.files, self.failed = self.files + 1, self.failed + failed
        self.bar.set_postfix(files=f"{self.files}/{self.n_files}")
        now = time.monotonic()
        if self.lines and (now - self.last >= self.every or self.files == self.n_files):
            self.last = now
            wall = max(now - self.start, 1e-9)
            eta = (self.audio_s - self.seconds) * wall / self.seconds if self.seconds else 0.0
            log.info(
                "predict: %d/%d files (%d failed), %.0f/%.0f audio-s, %.0fx real time, "
                "%.0f s elapsed, ETA %.0f s",
                self.files,
                self.n_files,
                self.failed,
                self.seconds,
                self.audio_s,
                self.seconds / wall,
                wall,
                max(eta, 0.0),
            )

    def close(self) -> None:
        self.bar.close()


def shard_of(name: Path | str, count: int) -> int:
    """The shard (1 to ``count``) an input belongs to, from its name below the inputs' common
    folder: the same whatever the order or the machine.

    >>> shard_of("site_a/2024-05-01.wav", 4), shard_of("site_a/2024-05-01.wav", 1)
    (1, 1)
    """
    digest = hashlib.sha256(Path(name).as_posix().encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``k/N`` as (k, N), 1 <= k <= N; None for None.

    >>> parse_shard("2/8")
    (2, 8)
    """
    if text is None:
        return None
    k, _, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1]:
        raise UserError(f"--shard must be k/N with 1 <= k <= N (e.g. 3/10), got {text!r}")
    return shard


def predict_files(model: AudioModel, files: list[str], out_dir: Path, args) -> dict:
    """Predict every file (of ``args.shard``) not finished in ``out_dir`` yet, write the tables;
    returns counts, audio-seconds, wall time and timings."""
    from audioclf.deploy.predictor import Timings, clean, predict_recordings

    names = tables.output_names(files)  # of every input: each shard names files alike
    if shard := parse_shard(args.shard):
        files = [f for f in files if shard_of(names[f], shard[1]) == shard[0]]
    timings = Timings()
    with Writer(out_dir, model, names, args) as writer:
        todo = [f for f in files if f not in writer.done]
        if len(todo) < len(files):
            log.info(
                "predict: %d of %d file(s) already in %s",
                len(files) - len(todo),
                len(files),
                out_dir,
            )
        counts = {"files": len(files), "resumed": len(files) - len(todo), "predicted": 0}
        counts |= {"failed": 0, "audio_s": 0.0}
        sources = [(f, lambda rate, f=f: decoded_blocks(f, rate)) for f in todo]
        start = time.perf_counter()
        progress = Progress(len(todo), audio_seconds(todo), args.progress_every)
        with contextlib.closing(progress):
            for rec in predict_recordings(
                model,
                sources,
                overlap_s=args.overlap,
                batch_size=args.batch_size,
                workers=args.workers,
                progress=progress.audio,
                timings=timings,
                device=args.device,
                embeddings=args.embeddings,
            ):
                writer.add(rec)
                if rec.error is None:
                    counts["predicted"] += 1
                    counts["audio_s"] += rec.duration_s
                else:
                    counts["failed"] += 1
                    log.warning("predict: %s: %s (skipped)", clean(rec.name), rec.error)
                progress.file(rec.error is not None)
    wall = time.perf_counter() - start
    return {**counts, "windows": timings.windows, "wall_s": wall, "timings": vars(timings)}


def main(argv: list[str] | None = None) -> dict:
    """``audioclf predict INPUT... [--model ...] [--out predictions]``; see ``--help``."""
    ap = parser(__doc__, prog="audioclf predict", params=False)
    ap.add_argument("inputs", nargs="+", help="audio files, folders (recursive) or glob patterns")
    ap.add_argument(
        "--model",
        default="models",
        help="checkpoint (.pt), models/ folder (its best fold by validation macro-F1), MLflow "
        "Model folder, models:/<name>/<version>, runs:/<id>/model, or an ONNX export (.onnx, "
        "with its .json beside it) (default: %(default)s)",
    )
    ap.add_argument(
        "--split",
        type=Path,
        default=Path("data/split"),
        help="names the folds of a models/ folder (default: %(default)s)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("predictions"),
        help="output folder; with --shard k/N, <out>/shard-k-of-N (default: %(default)s)",
    )
    ap.add_argument(
        "--overlap",
        type=float,
        default=0.0,
        help="seconds shared by consecutive windows (default: %(default)s)",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per front-end and network call, at most 1024 (default: 16)",
    )
    ap.add_argument(
        "--workers", type=int, default=0, help="threads, 0: one per core (default: %(default)s)"
    )
    ap.add_argument(
        "--min-score",
        type=float,
        default=tables.MIN_SCORE,
        help="write labels scoring at least this: a label taking half of a window's probability "
        "is a detection; 0 writes every window's top labels (default: %(default)s)",
    )
    ap.add_argument(
        "--top-k",
        type=int,
        default=1,
        help="labels per window (and per file in the summary) (default: %(default)s)",
    )
    ap.add_argument(
        "--raven",
        choices=tables.RAVEN_MODES,
        default="per-file",
        help="Raven selection tables (default: %(default)s)",
    )
    ap.add_argument(
        "--no-audacity", dest="audacity", action="store_false", help="no Audacity label files"
    )
    ap.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="runs the network: torch, or ONNX Runtime (exported on the spot, checked against "
        "torch; an .onnx --model always runs in ONNX Runtime) (default: %(default)s)",
    )
    ap.add_argument(
        "--shard",
        default=None,
        help="k/N: only the inputs of shard k of N (by a hash of each one's path below the "
        "inputs' common folder), for the N tasks of a job array (default: every input)",
    )
    ap.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="cpu",
        help="runs the network (auto: CUDA when torch sees a GPU); decoding and the front-end "
        "stay on CPU threads (default: %(default)s)",
    )
    ap.add_argument(
        "--embeddings",
        action="store_true",
        help="also write each window's penultimate-layer vector, with the model id, to "
        "embeddings/<file>.parquet",
    )
    ap.add_argument(
        "--progress-every",
        type=float,
        default=PROGRESS_EVERY_S,
        help="seconds between progress lines when stderr is not a terminal (a log file, a "
        "cluster job); a terminal shows a bar (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    if args.top_k < 1 or not 0 <= args.min_score <= 1:
        raise UserError(
            f"--top-k must be >= 1 and --min-score in [0, 1], got {args.top_k} and {args.min_score}"
        )
    shard = parse_shard(args.shard)
    if shard:  # each task of a job array in its own folder
        args.out = args.out / f"shard-{shard[0]}-of-{shard[1]}"
    files = find_inputs(args.inputs)
    # torch loads only now: --help and a bad argument answer at once
    from audioclf.deploy.export import use_onnxruntime
    from audioclf.deploy.model import is_model_uri, load_model
    from audioclf.deploy.predictor import BATCH_SIZE, check_batch_size
    from audioclf.devices import resolve_device

    check_batch_size(BATCH_SIZE if args.batch_size is None else args.batch_size)
    if args.batch_size is None:
        args.batch_size = BATCH_SIZE
    args.device = resolve_device(args.device, "--device")
    threads = max(1, (args.workers or len(os.sched_getaffinity(0))) - 1)
    if Path(args.model).suffix.lower() == ".onnx":
        return _run(onnx_model(Path(args.model), threads), files, args)
    store = model_store(args.model) if is_model_uri(args.model) else None
    model = load_model(args.model, split_dir=args.split, tracking_uri=store)
    with tempfile.TemporaryDirectory(prefix="audioclf-predict-") as tmp:
        if args.backend == "onnxruntime":
            model = use_onnxruntime(model, threads, Path(tmp))
        return _run(model, files, args)


def model_store(uri: str, environ=os.environ) -> str:
    """The tracking URI a model URI is looked up in: ``MLFLOW_TRACKING_URI``, else the project's
    ``mlflow.db``, which must exist (MLflow would create an empty one wherever predict runs)."""
    from audioclf.tracking import resolve_store  # imports MLflow: only for a model URI

    if environ.get("MLFLOW_TRACKING_URI"):
        return resolve_store(repo_root(), environ).uri
    db = repo_root() / "mlflow.db"
    if not db.is_file():
        raise MissingInputError(
            f"--model {uri} is looked up in the project's MLflow store, {db}, which does not "
            "exist: run audioclf predict in the project's folder, or set MLFLOW_TRACKING_URI"
        )
    return resolve_store(repo_root(), environ).uri


def onnx_model(path: Path, threads: int) -> AudioModel:
    """The model of an ONNX export (``audioclf export``): the graph run by ONNX Runtime, the labels
    and front-end from the JSON beside it (``model.json`` for ``model.onnx``)."""
    import json

    import onnxruntime

    from audioclf.config.features import FeaturesConfig
    from audioclf.config.schema import build
    from audioclf.deploy.export import INPUT, OUTPUT
    from audioclf.deploy.model import AudioModel, ModelError
    from audioclf.deploy.predictor import clean
    from audioclf.features.frontends import FrontEnd

    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise MissingInputError(
            f"--model {path}: an ONNX export needs the graph and its {meta_path.name} beside it "
            "(audioclf export --format onnx --out <file>.onnx writes both), or pass the "
            "checkpoint it came from: --model models"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != "onnx" or not meta.get("labels"):
        raise ModelError(f"{meta_path} is not the description of an audioclf ONNX export")
    features = build(FeaturesConfig, meta.get("frontend") or {}, f"{meta_path.name}: frontend")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ONNX Runtime raises its own kinds; each means "not loadable"
        reason = clean(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]
        raise ModelError(f"ONNX Runtime cannot load {path}: {reason}") from exc

    def run(features: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: features.numpy()})[0]

    return AudioModel(
        classifier=None,
        frontend=FrontEnd(features).eval(),
        features=features,
        labels=list(meta["labels"]),
        checkpoint={"model_name": meta.get("model", "onnx")},
        source=f"{path} (ONNX Runtime)",
        runtime=run,
    )


def _run(model: AudioModel, files: list[str], args) -> dict:
    log.info(
        "predict: %d file(s)%s with %s (%s, %d labels)",
        len(files),
        f", shard {args.shard} of them," if args.shard else "",
        model.source,
        model.checkpoint["model_name"],
        len(model.labels),
    )
    result = predict_files(model, files, args.out, args)
    if not result["predicted"] and not result["resumed"] and result["files"]:
        raise UserError(
            f"none of the {len(files)} input(s) could be decoded: see {args.out / 'failed.csv'}"
        )
    if result["resumed"] == result["files"]:
        log.info("predict: every file was already done in %s: nothing left to predict", args.out)
        return result
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
