"""The MLflow Model of a trained model: front-end, network and labels behind one ``predict``.

:func:`log_model` logs a checkpoint as a pyfunc model (MLflow's "models from code": the model
is :data:`CODE`, a file of code, and its checkpoint an artifact, so loading unpickles nothing)
with a signature and an input example, in the active run; :func:`register` adds it to the
registry as ``audioclf-<dataset>`` with the test metrics and the DVC experiment name on the
version. Loading needs the ``audioclf`` package where it runs (``--env-manager local``).

The payload (``dataframe_records`` in a POST to ``/invocations``), one record per recording::

    {"dataframe_records": [{"audio_base64": "<a whole audio file (WAV, FLAC, ...), base64>"}]}
    {"dataframe_records": [{"samples": [0.0, 0.1, ...], "sample_rate": 22050}]}

and optionally ``"params": {"overlap_s": 0.0, "top_k": 1, "min_score": 0.0}``. The answer has one
row per detection, as ``audioclf predict``'s ``windows.csv``: ``input`` (the record's position),
``start_s``, ``end_s``, ``label``, ``score``, ``rank``, ``fill``, and ``error`` (why a record could
not be decoded; then its only row).
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from audioclf.deploy.model import ARTIFACT, AudioModel, from_checkpoint
from audioclf.deploy.predictor import BATCH_SIZE, predict_recordings
from audioclf.deploy.tables import detections
from audioclf.features.audio import DecodeError
from audioclf.features.stream import array_blocks, decoded_blocks

log = logging.getLogger(__name__)

CODE = Path(__file__).with_name("pyfunc_code.py")  # the model's code, as MLflow logs it
ARTIFACT_PATH = "model"  # runs:/<run id>/model
COLUMNS = ("input", "start_s", "end_s", "label", "score", "rank", "fill", "error")
PARAMS = {"overlap_s": 0.0, "top_k": 1, "min_score": 0.0, "batch_size": BATCH_SIZE}
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


class AudioclfModel(mlflow.pyfunc.PythonModel):
    """Recordings (base64 audio files, or samples and their rate) -> per-window labels and scores."""

    def load_context(self, context) -> None:
        self.model = from_checkpoint(context.artifacts[ARTIFACT], source="mlflow")

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return predict_frame(self.model, model_input, {**PARAMS, **(params or {})})


def _blocks(record: dict):
    """The blocks function of one payload record (see the module docstring)."""
    audio = record.get("audio_base64")
    if isinstance(audio, str) and audio:
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"audio_base64 is not base64: {exc}") from exc
        return lambda rate: decoded_blocks(data, rate)
    samples, rate = record.get("samples"), record.get("sample_rate")
    if samples is None or rate is None or (isinstance(rate, float) and np.isnan(rate)):
        raise DecodeError("a record needs audio_base64, or samples with their sample_rate")
    return lambda target: array_blocks(np.asarray(samples, dtype=np.float32), int(rate), target)


def predict_frame(model: AudioModel, frame: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The pyfunc's answer for a frame of recordings (one per row); see the module docstring."""
    rows, sources, failed = [], [], {}
    for i, record in enumerate(frame.to_dict(orient="records")):
        try:
            sources.append((str(i), _blocks(record)))
        except DecodeError as exc:
            failed[i] = str(exc)
    recs = {
        int(r.name): r
        for r in predict_recordings(
            model,
            sources,
            overlap_s=float(params["overlap_s"]),
            batch_size=int(params["batch_size"]),
        )
    }
    for i in range(len(frame)):
        rec = recs.get(i)
        error = failed.get(i) or (rec.error if rec is not None else None)
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
                rec, model.labels, int(params["top_k"]), float(params["min_score"])
            )
        ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


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
        artifacts["sklearn_model"] = str(Path(checkpoint).parent / head)
    return mlflow.pyfunc.log_model(
        name=ARTIFACT_PATH,
        python_model=str(CODE),
        artifacts=artifacts,
        signature=SIGNATURE,
        input_example=input_example(model),
        pip_requirements=requirements(),
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
