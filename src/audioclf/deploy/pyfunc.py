"""The MLflow Model of a trained model: front-end, network and labels behind one ``predict``.

:func:`log_model` logs a checkpoint as a pyfunc model (MLflow's "models from code": the model
is :data:`CODE`, a file of code, and its checkpoint an artifact, so loading unpickles nothing)
with a signature and an input example, in the active run; :func:`register` adds it to the
registry as ``audioclf-<dataset>`` with the test metrics and the DVC experiment name on the
version. Loading needs the ``audioclf`` package where it runs (``--env-manager local``).

The payload (``dataframe_records`` in a POST to ``/invocations``), one record per recording::

    {"dataframe_records": [{"audio_base64": "<a whole audio file (WAV, FLAC, ...), base64>"}]}
    {"dataframe_records": [{"samples": [0.0, 0.1, ...], "sample_rate": 22050}]}

and optionally ``"params": {"overlap_s": 0.0, "top_k": 1, "min_score": 0.5, "batch_size": 16}``.
The answer has one row per detection, as ``audioclf predict``'s ``windows.csv``: ``input`` (the
record's position), ``start_s``, ``end_s``, ``label``, ``score``, ``rank``, ``fill``, and ``error``
(why a record could not be answered, naming the field and its allowed range; then its only row).
A bad record never costs the good ones of its request; bad params answer every record with the
reason. No answer carries a traceback.

Each request has a budget (:class:`Limits`, from the environment of the process that loads the
model): ``AUDIOCLF_SERVE_MAX_AUDIO_S`` seconds of decoded audio (default 7200),
``AUDIOCLF_SERVE_MAX_REQUEST_MB`` of audio payload (default 1024: an hour of 48-kHz stereo 16-bit
WAV is 691 MB) and ``AUDIOCLF_SERVE_DEADLINE_S`` (default three quarters of
``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, so the work ends before the server gives up on it and
every worker thread comes back; under ``audioclf serve`` it counts from the request's arrival,
and the work stops once its client hangs up or it is answered: :data:`REQUEST`). Records past a
cap, or not scored by the deadline, get an ``error`` row.

The network runs on ``device``: ``auto`` (default: CUDA where torch sees it, else the CPU),
``cpu`` or ``cuda``, MLflow's load-time model config: ``mlflow.pyfunc.load_model(uri,
model_config={"device": "cuda"})``, or for ``mlflow models serve`` the environment variable
``MLFLOW_PYFUNC_INFERENCE_CONFIG='{"device": "cuda"}'``. Decoding and the front-end stay on the
CPU, and the weights are copied to the device once, at load.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import importlib.metadata
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from audioclf.deploy.model import ARTIFACT, AudioModel, ModelError, from_checkpoint
from audioclf.deploy.predictor import (
    BATCH_SIZE,
    MAX_BATCH_SIZE,
    Budget,
    PredictError,
    Stopped,
    clean,
    predict_recordings,
    window_hop,
)
from audioclf.deploy.tables import MIN_SCORE, detections
from audioclf.devices import resolve_device
from audioclf.errors import UserError
from audioclf.features.audio import DecodeError
from audioclf.features.stream import array_blocks, decoded_blocks
from audioclf.models.inference import CPU

log = logging.getLogger(__name__)

CODE = Path(__file__).with_name("pyfunc_code.py")  # the model's code, as MLflow logs it
ARTIFACT_PATH = "model"  # runs:/<run id>/model
COLUMNS = ("input", "start_s", "end_s", "label", "score", "rank", "fill", "error")
PARAMS = {"overlap_s": 0.0, "top_k": 1, "min_score": MIN_SCORE, "batch_size": BATCH_SIZE}
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "audio_base64", required=False),
            ColSpec(Array("double"), "samples", required=False),
            ColSpec("long", "sample_rate", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("long", "input"),
            ColSpec("double", "start_s"),
            ColSpec("double", "end_s"),
            ColSpec("string", "label"),
            ColSpec("double", "score"),
            ColSpec("long", "rank"),
            ColSpec("string", "fill"),
            ColSpec("string", "error"),
        ]
    ),
    params=ParamSchema(
        [
            ParamSpec("overlap_s", "double", PARAMS["overlap_s"]),
            ParamSpec("top_k", "long", PARAMS["top_k"]),
            ParamSpec("min_score", "double", PARAMS["min_score"]),
            ParamSpec("batch_size", "long", PARAMS["batch_size"]),
        ]
    ),
)
# what the model imports, at the versions that logged it
REQUIREMENTS = ("torch", "numpy", "pandas", "mlflow", "soundfile", "soxr", "librosa", "scipy")
REQUIREMENTS += ("numba", "blake3", "pyyaml", "threadpoolctl", "transformers")


MAX_SAMPLE_RATE = 1_000_000  # Hz: above the fastest ultrasonic recorders
LIMIT_ENV = {
    "max_audio_s": "AUDIOCLF_SERVE_MAX_AUDIO_S",
    "max_request_mb": "AUDIOCLF_SERVE_MAX_REQUEST_MB",
    "deadline_s": "AUDIOCLF_SERVE_DEADLINE_S",
}
SERVER_TIMEOUT_ENV = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"  # mlflow models serve's 504, in s
# the settings a loader may override (load_model's model_config, MLFLOW_PYFUNC_INFERENCE_CONFIG)
MODEL_CONFIG = {"device": "auto"}


@dataclass(frozen=True)
class Limits:
    """One request's budget: decoded audio seconds, audio payload MB, seconds of work."""

    max_audio_s: float = 7200.0
    max_request_mb: float = 1024.0
    deadline_s: float = 45.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """The limits set in ``environ`` (:data:`LIMIT_ENV`), the defaults for the others."""
        values = {"deadline_s": 0.75 * positive_setting(environ, SERVER_TIMEOUT_ENV, 60.0)}
        for key, name in LIMIT_ENV.items():
            values[key] = positive_setting(environ, name, values.get(key, getattr(cls, key)))
        return cls(**values)


def positive_setting(environ: Mapping[str, str], name: str, default: float) -> float:
    """The positive number setting ``name`` holds in ``environ``, or ``default`` where unset."""
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a positive number, got {text!r}")
    return value


@dataclass(frozen=True)
class Request:
    """The HTTP request a call answers, as the server that received it sets it in
    :data:`REQUEST`: when it arrived (:func:`time.monotonic`), so that the deadline counts the
    time spent reading and parsing its body too, and an event set once its client has hung up or
    it has been answered (MLflow's 504 after ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`` included),
    which stops the work still running for it."""

    arrived: float
    abandoned: threading.Event


# set per request by audioclf serve (audioclf.deploy.serve.RequestBounds); the scoring thread
# MLflow's server starts for the request inherits it (asyncio.to_thread copies the context)
REQUEST: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "audioclf_request", default=None
)


class AudioclfModel(mlflow.pyfunc.PythonModel):
    """Recordings (base64 audio files, or samples and their rate) -> per-window labels and scores."""

    device = CPU  # until load_context reads the model config

    def load_context(self, context) -> None:
        self.device = serving_device(getattr(context, "model_config", None) or {})
        self.model = from_checkpoint(context.artifacts[ARTIFACT], source="mlflow")
        self.model.on_device(self.device)  # the weights go to the device now, not per request
        self.limits = Limits.from_environ()

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        request = REQUEST.get()
        return predict_frame(
            self.model,
            model_input,
            params,
            self.limits,
            cancel=request.abandoned if request else None,
            device=self.device,
            started=request.arrived if request else None,
        )


def serving_device(model_config: Mapping) -> torch.device:
    """The device ``model_config`` names (:data:`MODEL_CONFIG`; a model logged without one: auto).

    Raises:
        UserError: not one of auto, cpu, cuda; or cuda where torch sees no CUDA device.
    """
    name = model_config.get("device", MODEL_CONFIG["device"])
    return resolve_device(str(name).strip().lower(), "model_config.device")


class RecordError(ValueError):
    """A record (or a request's params) that cannot be answered; the message names the field."""


def check_params(model: AudioModel, params: Mapping | None) -> dict:
    """The request's params over :data:`PARAMS`, each checked against its allowed range.

    Raises:
        RecordError: an unknown param, or a value outside its range (named, with the range).
    """
    given = dict(params or {})
    if unknown := sorted(set(given) - set(PARAMS)):
        raise RecordError(f"unknown params {unknown}: the params are {sorted(PARAMS)}")
    values = {**PARAMS, **given}
    try:
        overlap_s, min_score = float(values["overlap_s"]), float(values["min_score"])
        top_k, batch_size = _integer(values["top_k"]), _integer(values["batch_size"])
    except (TypeError, ValueError) as exc:
        raise RecordError(f"params: {exc}") from None
    n_labels = len(model.labels)
    if top_k is None or not 1 <= top_k <= n_labels:
        raise RecordError(f"top_k must be an integer in [1, {n_labels}], got {values['top_k']}")
    if not 0 <= min_score <= 1:  # NaN included
        raise RecordError(f"min_score must be a number in [0, 1], got {values['min_score']}")
    if batch_size is None or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise RecordError(
            f"batch_size must be an integer in [1, {MAX_BATCH_SIZE}], got {values['batch_size']}"
        )
    try:
        window_hop(model, overlap_s, name="overlap_s")
    except PredictError as exc:
        raise RecordError(str(exc)) from None
    return {
        "overlap_s": overlap_s,
        "top_k": top_k,
        "min_score": min_score,
        "batch_size": batch_size,
    }


def _integer(value) -> int | None:
    """``value`` as an int when it is a whole, finite number, else None."""
    number = float(value)
    return int(number) if math.isfinite(number) and number == int(number) else None


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _blocks(record: Mapping, limits: Limits, room: float) -> tuple:
    """The blocks function of one payload record and its payload bytes (see the module docstring).

    Args:
        record: one row of the request.
        limits: the request's limits.
        room: payload bytes the request may still take.

    Raises:
        RecordError: naming the field, what is wrong and the allowed range.
    """
    audio = record.get("audio_base64")
    if not _missing(audio) and audio != "":
        if not isinstance(audio, str):
            raise RecordError("audio_base64 must be a string of base64")
        size = len(audio) * 3 // 4
        if size > room:
            raise RecordError(_over("audio_base64", size, limits))
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RecordError(f"audio_base64 is not base64: {exc}") from None
        return (lambda rate: _prefixed("audio_base64", decoded_blocks(data, rate))), size
    samples, rate = record.get("samples"), record.get("sample_rate")
    if _missing(samples) or _missing(rate):
        raise RecordError("a record needs audio_base64, or samples with their sample_rate")
    try:
        hz = _integer(rate)
    except (TypeError, ValueError):
        hz = None
    if hz is None or not 1 <= hz <= MAX_SAMPLE_RATE:
        raise RecordError(
            f"sample_rate must be an integer in [1, {MAX_SAMPLE_RATE}] Hz, got {rate!r:.40}"
        )
    if len(samples) / hz > limits.max_audio_s:
        raise RecordError(
            f"samples: {len(samples)} samples at {hz} Hz are {len(samples) / hz:g} s, over the "
            f"request's cap of {limits.max_audio_s:g} s of audio"
        )
    try:
        with np.errstate(over="ignore"):  # beyond float32: then non-finite, refused on reading
            array = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError):
        raise RecordError("samples must be a list of numbers (or of per-channel lists)") from None
    if array.nbytes > room:
        raise RecordError(_over("samples", array.nbytes, limits))
    if array.ndim not in (1, 2) or not array.size:
        raise RecordError(f"samples must be (N,) or (N, channels) numbers, got {array.shape}")
    return (lambda target: _prefixed("samples", array_blocks(array, hz, target))), array.nbytes


def _over(field: str, size: int, limits: Limits) -> str:
    return (
        f"{field}: {size / 2**20:.1f} MB of audio puts the request over its cap of "
        f"{limits.max_request_mb:g} MB ({LIMIT_ENV['max_request_mb']})"
    )


def _prefixed(name: str, blocks):
    """``blocks``, with the field's name before the reason of a :class:`DecodeError`."""
    try:
        yield from blocks
    except DecodeError as exc:
        raise DecodeError(f"{name}: {exc}") from None


def predict_frame(
    model: AudioModel,
    frame: pd.DataFrame,
    params: Mapping | None,
    limits: Limits | None = None,
    cancel: threading.Event | None = None,
    device: torch.device = CPU,
    started: float | None = None,
) -> pd.DataFrame:
    """The pyfunc's answer for a frame of recordings (one per row); see the module docstring.

    Args:
        model: the loaded model.
        frame: the request's records.
        params: the request's params (:data:`PARAMS` for those not given).
        limits: the request's budget (default :class:`Limits`).
        cancel: set to stop the work (a client gone); unfinished records get an error row.
        device: runs the network (:func:`serving_device`).
        started: when the request arrived (:func:`time.monotonic`); the deadline counts from
            then (None: from now).
    """
    limits = limits or Limits()
    records = frame.to_dict(orient="records")
    try:
        settings = check_params(model, params)
    except RecordError as exc:
        return _errors(dict.fromkeys(range(len(records)), clean(str(exc))))
    deadline = (time.monotonic() if started is None else started) + limits.deadline_s
    errors: dict[int, str] = {}
    sources, room = [], limits.max_request_mb * 2**20
    for i, record in enumerate(records):
        try:
            blocks, size = _blocks(record, limits, room)
        except RecordError as exc:
            errors[i] = clean(str(exc))
            continue
        room -= size
        sources.append((str(i), blocks))
    recs = {}
    budget = Budget(max_audio_s=limits.max_audio_s, deadline=deadline, cancel=cancel)
    try:
        for rec in predict_recordings(
            model,
            sources,
            overlap_s=settings["overlap_s"],
            batch_size=settings["batch_size"],
            budget=budget,
            device=device,
        ):
            recs[int(rec.name)] = rec
    except Stopped as exc:
        unfinished = f"not scored: {exc}"
        if not (cancel and cancel.is_set()):  # the deadline, and the setting that moves it
            unfinished += f" ({limits.deadline_s:g} s, {LIMIT_ENV['deadline_s']})"
        errors.update((int(name), unfinished) for name, _ in sources if int(name) not in recs)
    except MemoryError:
        log.exception("predict: out of memory")
        unfinished = (
            "not scored: out of memory (send fewer or shorter records, or lower batch_size)"
        )
        errors.update((int(name), unfinished) for name, _ in sources if int(name) not in recs)
    except Exception:  # a bug: its traceback goes to the server's log, never into an answer
        log.exception("predict: scoring failed")
        unfinished = "not scored: an internal error (its traceback is in the server's log)"
        errors.update((int(name), unfinished) for name, _ in sources if int(name) not in recs)
    return _rows(model, len(records), recs, errors, settings)


def _errors(errors: dict[int, str]) -> pd.DataFrame:
    rows = [{"input": i, "error": e, "label": "", "fill": ""} for i, e in sorted(errors.items())]
    return _frame(rows)


def _frame(rows: list[dict]) -> pd.DataFrame:
    """The answer; where error rows lack the numbers, they are None (JSON ``null``: ``NaN`` is
    not JSON, and a browser's ``JSON.parse`` refuses it) and the ranks stay integers."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame["error"].fillna("").ne("").any():
        for column, kind in (("start_s", float), ("end_s", float), ("score", float), ("rank", int)):
            values = [None if pd.isna(v) else kind(v) for v in frame[column]]
            frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _rows(model: AudioModel, n: int, recs: dict, errors: dict, settings: dict) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rec = recs.get(i)
        error = errors.get(i) or (rec.error if rec is not None else None)
        if error is not None:
            rows.append({"input": i, "error": error, "label": "", "fill": ""})
            continue
        rate = rec.sample_rate
        rows += [
            {
                "input": i,
                "start_s": round(int(rec.starts[w]) / rate, 6),
                "end_s": round(int(rec.stops[w]) / rate, 6),
                "label": label,
                "score": score,
                "rank": rank,
                "fill": rec.fills[w],
                "error": "",
            }
            for w, rank, label, score in detections(
                rec, model.labels, settings["top_k"], settings["min_score"]
            )
        ]
    return _frame(rows)


def input_example(model: AudioModel) -> pd.DataFrame:
    """One second of a seeded tone in noise, as the samples form of the payload."""
    rate = model.features.sample_rate
    t = np.arange(rate) / rate
    rng = np.random.default_rng(0)
    samples = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(rate)
    return pd.DataFrame([{"samples": np.round(samples, 4).tolist(), "sample_rate": rate}])


def requirements() -> list[str]:
    found = []
    for name in REQUIREMENTS:
        try:
            found.append(f"{name}=={importlib.metadata.version(name).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def log_model(checkpoint: Path):
    """Log ``checkpoint`` as the active run's MLflow Model (``runs:/<run id>/model``); returns its info."""
    model = from_checkpoint(checkpoint)
    artifacts = {ARTIFACT: str(checkpoint)}
    head = model.checkpoint.get("sklearn_model")  # a scikit-learn head's folder, beside best.pt
    if head:
        folder = Path(checkpoint).resolve().parent
        if Path(head).is_absolute() or folder not in (folder / head).resolve().parents:
            raise ModelError(
                f"checkpoint {checkpoint} names its scikit-learn head {head!r} outside its own "
                "folder; a head lies beside the checkpoint (retrain it, dvc repro train)"
            )
        artifacts["sklearn_model"] = str(folder / head)
    return mlflow.pyfunc.log_model(
        name=ARTIFACT_PATH,
        python_model=str(CODE),
        artifacts=artifacts,
        signature=SIGNATURE,
        input_example=input_example(model),
        pip_requirements=requirements(),
        model_config=MODEL_CONFIG,  # the settings a loader may override
    )


def registered_name(dataset: str) -> str:
    return f"audioclf-{dataset}"


def register(
    model_uri: str, dataset: str, metrics: dict[str, float], *, dvc_exp_name: str
) -> mlflow.entities.model_registry.ModelVersion:
    """Register ``model_uri`` as a new version of ``audioclf-<dataset>``, tagged with ``metrics``
    (``test_<name>``) and the DVC experiment's name (``workspace`` outside one)."""
    tags = {f"test_{k}": f"{v:.6f}" for k, v in metrics.items()}
    tags["dvc_exp_name"] = dvc_exp_name
    version = mlflow.register_model(model_uri, registered_name(dataset), tags=tags)
    mlflow.MlflowClient().update_model_version(
        version.name,
        version.version,
        description=", ".join(f"{k} {v}" for k, v in tags.items()),
    )
    log.info("registered %s version %s", version.name, version.version)
    return version
