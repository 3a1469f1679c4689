"""``audioclf export`` and the export stage: a trained model as ONNX, with its labels and front-end.

:func:`export` is the one way a model is exported: the ``export`` stage runs it on the
workspace's ``models/`` (the best fold by validation macro-F1) and :func:`main`, the
``audioclf export --format onnx`` command, on any source :func:`audioclf.deploy.model.load_model`
takes. A model with no ONNX graph (trained with ``train.norm=group``, or a scikit-learn head)
gets the JSON alone, saying why; the command then also ends with that reason as its error.

Normalisation and network are in the graph, the front-end beside it.

The graph maps front-end features ``features`` (batch, C, F, T) float32 -- dB log-mel, or
MFCC with deltas, exactly as the features stage computes them -- to ``logits`` (batch,
n_classes); the batch axis is dynamic and the training split's normalisation is inside.

The front-end stays outside the graph, shipped as a reference: the JSON beside the model
holds its params, and :class:`audioclf.features.frontends.FrontEnd` built from them is the
very code the features stage ran (equal to librosa's ``power_to_db(melspectrogram(...))``
to float32 rounding, see ``reference_frontend`` in the JSON). An ONNX STFT version would
be a second implementation of the features the model was trained on, free to drift from
them (its per-item dB floor, centring, padding and mel filterbank included); keeping one
front-end is worth an extra call on the user's side.

Every export is checked on the spot: ONNX Runtime against torch on the same features, at
another batch size than the exported example's, must agree within :data:`TOLERANCE` on
every logit and on every top-1 label, or the export fails.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from audioclf.cli import parser
from audioclf.deploy.model import (
    AudioModel,
    checkpoint_file,
    from_checkpoint,
    is_model_uri,
    undeployable,
)
from audioclf.errors import UserError
from audioclf.features.store import frontend_params
from audioclf.io import atomic_path, repo_root, write_json
from audioclf.models.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # max |logit difference| between ONNX Runtime and torch
INPUT, OUTPUT = "features", "logits"
FORMATS = ("onnx",)
PARITY_BATCH = 5  # windows of the parity check (the export's example has 2: the axis is dynamic)
REFERENCE_FRONTEND = (
    "audioclf.features.frontends.FrontEnd(FeaturesConfig(**frontend)) on windows of "
    "window.samples samples at frontend.sample_rate (mono, down-mixed by the channels' mean, "
    "resampled with soxr HQ); for kind logmel equal to librosa.power_to_db("
    "librosa.feature.melspectrogram(y=window, sr=sample_rate, n_fft=n_fft, "
    "hop_length=hop_length, n_mels=n_mels, fmin=f_min, fmax=f_max, power=2.0), ref=1.0, "
    "amin=1e-10, top_db=top_db) per window (times a Butterworth high-pass's |H(f)|^2 at f_min "
    "when highpass_order > 0), with a leading channel axis"
)


class ExportError(UserError, RuntimeError):
    """A model that cannot be exported, or whose export does not match torch."""


def example_features(model: AudioModel, batch: int, seed: int = 0) -> torch.Tensor:
    """Front-end features (batch, C, F, T) of seeded noise windows, for tracing and parity."""
    gen = torch.Generator().manual_seed(seed)
    windows = 0.1 * torch.randn(batch, model.features.segment_samples, generator=gen)
    return model.featurize(windows.numpy())


def no_onnx(ckpt: dict) -> str | None:
    """Why :func:`export` writes no ONNX graph for a checkpoint, or None when it does."""
    if reason := undeployable(ckpt):
        return reason
    if ckpt.get("sklearn_model"):
        name = ckpt["model_name"]
        return f"model={name} is a scikit-learn head: serve its MLflow Model (docs/deploy.md)"
    if ckpt["model_name"] == "hf":
        return (
            "model=hf runs its checkpoint's feature extractor (NumPy) inside the model, which an "
            "ONNX graph cannot hold: use the checkpoint itself"
        )
    return None


def not_exported(ckpt: dict, reason: str, meta_path: Path) -> dict:
    """The JSON of a model without an ONNX graph: what it is and why."""
    meta = {
        "model": ckpt["model_name"],
        "labels": list(ckpt["labels"]),
        "onnx": None,
        "reason": reason,
    }
    log.warning("export: %s", meta["reason"])
    write_json(meta, meta_path)
    return meta


def export_onnx(model: AudioModel, path: Path, meta_path: Path | None = None) -> dict:
    """Write ``model`` as ONNX at ``path`` (and its labels and front-end as JSON at ``meta_path``).

    Returns:
        The JSON's content: labels, input and output, front-end params, window, parity figures.

    Raises:
        ExportError: the model's family cannot be exported, or the export disagrees with torch.
    """
    import onnxruntime

    name = model.checkpoint["model_name"]
    classifier = model.classifier.eval()
    example = example_features(model, 2)
    with atomic_path(path) as tmp:
        try:
            torch.onnx.export(
                classifier,
                (example,),
                str(tmp),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many kinds; all mean "not exportable"
            raise ExportError(
                f"model {name!r} ({type(classifier.network).__name__}) cannot be exported to ONNX: "
                f"{_reason(exc)}. Serve it through its MLflow Model or its checkpoint instead"
            ) from exc
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        parity = check_parity(classifier, session, example_features(model, PARITY_BATCH, seed=1))
        if parity["max_abs_logit_diff"] > TOLERANCE or not parity["top1_identical"]:
            raise ExportError(
                f"the ONNX export of {name!r} disagrees with torch: max |logit difference| "
                f"{parity['max_abs_logit_diff']:.3g} (tolerance {TOLERANCE:g}), top-1 identical: "
                f"{parity['top1_identical']}; serve its MLflow Model or checkpoint instead"
            )
    meta = describe(model, parity)
    if meta_path is not None:
        with atomic_path(meta_path) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log.info(
        "export: %s -> %s (max |logit difference| against torch %.2g, top-1 identical)",
        name,
        path,
        parity["max_abs_logit_diff"],
    )
    return meta


def use_onnxruntime(model: AudioModel, threads: int, folder: Path) -> AudioModel:
    """``model`` with its classifier run by ONNX Runtime on ``threads`` threads: exported (and
    checked against torch) into ``folder``, which must outlive the returned model's use."""
    import onnxruntime

    path = folder / "model.onnx"
    export_onnx(model, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(features: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: features.numpy()})[0]

    return dataclasses.replace(model, runtime=run, source=f"{model.source} (ONNX Runtime)")


def _reason(exc: Exception) -> str:
    """The line of an exporter error that names the cause (its summary's first), without colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1 :]
    return (lines[0] if lines else type(exc).__name__)[:300]


def check_parity(classifier: torch.nn.Module, session, features: torch.Tensor) -> dict:
    """ONNX Runtime against torch on the same ``features``: max |logit difference|, top-1 agreement."""
    with torch.inference_mode():
        reference = classifier(features).float().numpy()  # (B, n_classes)
    got = session.run([OUTPUT], {INPUT: features.numpy()})[0]
    return {
        "batch": int(len(features)),
        "max_abs_logit_diff": float(np.abs(got - reference).max()),
        "top1_identical": bool((got.argmax(1) == reference.argmax(1)).all()),
    }


def describe(model: AudioModel, parity: dict) -> dict:
    """The JSON shipped beside the graph: everything a user needs to feed it and read it."""
    cfg, ckpt = model.features, model.checkpoint
    channels, bands, frames = cfg.shape
    return {
        "format": "onnx",
        "model": ckpt["model_name"],
        "labels": model.labels,
        "input": {"name": INPUT, "shape": ["batch", channels, bands, frames], "dtype": "float32"},
        "output": {"name": OUTPUT, "shape": ["batch", len(model.labels)], "dtype": "float32"},
        "normalisation": "inside the graph (the training split's statistics)",
        "frontend": frontend_params(cfg),
        "reference_frontend": REFERENCE_FRONTEND,
        "window": {
            "samples": cfg.segment_samples,
            "seconds": cfg.segment_samples / cfg.sample_rate,
            "sample_rate": cfg.sample_rate,
            "short": cfg.short_clips,
        },
        "source": model.source,
        "val_macro_f1": ckpt.get("val_macro_f1"),
        "parity": {**parity, "tolerance": TOLERANCE},
    }


def export(
    source: str | Path,
    path: Path,
    meta_path: Path,
    *,
    split_dir: Path | None = None,
    tracking_uri: str | None = None,
) -> dict:
    """Export the model ``source`` names as ONNX at ``path``, its JSON at ``meta_path``; a model
    with no ONNX graph (:func:`no_onnx`) gets the JSON alone, with ``onnx: null`` and the reason.

    Args:
        source: a checkpoint, ``models/`` folder, MLflow Model folder or model URI
            (:func:`audioclf.deploy.model.checkpoint_file`).
        path: the ONNX graph.
        meta_path: the JSON beside it (:func:`describe`).
        split_dir: the split folder naming the folds of a ``models/`` folder.
        tracking_uri: the MLflow store of a model URI.

    Returns:
        The JSON's content.

    Raises:
        ExportError: the model's family cannot be exported, or the export disagrees with torch.
    """
    with checkpoint_file(source, split_dir=split_dir, tracking_uri=tracking_uri) as (file, name):
        ckpt = load_checkpoint(file)[1]
        if reason := no_onnx(ckpt):
            return not_exported(ckpt, reason, meta_path)
        model = from_checkpoint(file, source=name)
    return export_onnx(model, path, meta_path)


def main(argv: list[str] | None = None) -> dict:
    """``audioclf export --format onnx``: a trained model as ONNX, with a JSON of its labels, input
    and front-end params beside it, checked against torch on the spot. A model with no ONNX graph
    gets the JSON alone, saying why, and the command ends with that reason.
    """
    ap = parser(main.__doc__, prog="audioclf export")
    ap.add_argument("--format", choices=FORMATS, default="onnx", help="the exchange format")
    ap.add_argument(
        "--model", default="models", help="checkpoint, models/ folder or MLflow model URI"
    )
    ap.add_argument(
        "--split", type=Path, default=Path("data/split"), help="names the folds of models/"
    )
    ap.add_argument("--out", type=Path, default=Path("exported/model.onnx"), help="the graph")
    ap.add_argument(
        "--meta", type=Path, default=None, help="labels and front-end (default: --out as .json)"
    )
    args = ap.parse_args(argv)
    store = None
    if is_model_uri(args.model):
        from audioclf.tracking import resolve_store  # imports MLflow: only for a model URI

        store = resolve_store(repo_root()).uri
    meta_path = args.meta or args.out.with_suffix(".json")
    meta = export(args.model, args.out, meta_path, split_dir=args.split, tracking_uri=store)
    if meta.get("reason"):
        raise ExportError(
            f"{args.model} has no ONNX graph ({meta_path} says why): {meta['reason']}"
        )
    return meta
