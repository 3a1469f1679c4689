"""A trained model with everything it needs to score raw audio, from wherever it is kept.

:func:`load_model` (and :func:`checkpoint_file`, for the checkpoint alone) takes a checkpoint
file, the ``models/`` folder of the workspace (its best fold by validation macro-F1), an MLflow
model folder, or an MLflow model URI (``models:/<name>/<version or @alias>``,
``runs:/<run id>/model``, looked up in the store whose tracking URI the caller passes). Every
checkpoint carries its labels, input normalisation and front-end params; the front-end is
rebuilt from them with the features stage's :class:`~audioclf.features.frontends.FrontEnd`.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from audioclf.config.features import FeaturesConfig
from audioclf.config.schema import build
from audioclf.data.split import fold_names
from audioclf.errors import MissingInputError, UserError
from audioclf.features.frontends import FrontEnd
from audioclf.features.table import stat_tensor
from audioclf.models.checkpoint import load_checkpoint
from audioclf.models.inference import CPU, channels_last, for_cpu_inference

CHECKPOINT = "best.pt"  # a fold's selected checkpoint in models/fold_<n>/
ARTIFACT = "checkpoint"  # the MLflow Model's artifact that holds it


class ModelError(UserError, ValueError):
    """A model source that cannot be used; the message says why and what to pass instead."""


class Classifier(nn.Module):
    """Normalisation and network together: front-end features (B, C, F, T) -> logits (B, n_classes).

    The training split's statistics are part of the module, so an export of it takes the
    front-end's output as it is (dB log-mel or MFCC), as does :class:`AudioModel`.
    """

    def __init__(self, network: nn.Module, norm: dict):
        super().__init__()
        self.network = network
        self.register_buffer("mean", stat_tensor(norm["mean"]))  # broadcastable to (C, F, T)
        self.register_buffer("std", stat_tensor(norm["std"]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network((features - self.mean) / self.std)  # (B, n_classes)


@dataclass
class AudioModel:
    """A checkpoint's model ready for raw audio.

    Attributes:
        classifier: normalisation and network, in eval mode.
        frontend: the front-end the model was trained on: windows (B, n) -> features (B, C, F, T).
        features: its params; ``segment_samples`` is the window length at ``sample_rate``.
        labels: class names, in logit order.
        checkpoint: the checkpoint dict (model name, params, validation score, ...).
        source: where the model came from, for reports.
        runtime: runs the classifier instead of torch when set (features (B, C, F, T) ->
            logits (B, n_classes)): ONNX Runtime, see :func:`audioclf.deploy.export.use_onnxruntime`.
    """

    classifier: Classifier
    frontend: FrontEnd
    features: FeaturesConfig
    labels: list[str]
    checkpoint: dict
    source: str
    runtime: Callable[[torch.Tensor], np.ndarray] | None = None
    # device -> (classifier, its copy for inference there), made on first use and again if the
    # classifier changes
    _copies: dict[str, tuple[nn.Module, nn.Module]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def on_device(self, device: torch.device) -> nn.Module:
        """The classifier's copy for inference on ``device`` (on the CPU: fused for it), made once
        per device and kept, so a served model copies its weights to a GPU once, not per request."""
        made = self._copies.get(str(device))
        if made is None or made[0] is not self.classifier:
            if device.type == "cpu":
                net = for_cpu_inference(self.classifier)
            else:
                net = copy.deepcopy(self.classifier).eval().to(device)
            made = self._copies[str(device)] = (self.classifier, net)
        return made[1]

    @torch.inference_mode()
    def featurize(self, windows: np.ndarray) -> torch.Tensor:
        """Front-end features (B, C, F, T) of windows (B, n) at ``features.sample_rate``."""
        return self.frontend(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))

    @torch.inference_mode()
    def probabilities(self, features: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (B, n_classes) of front-end features (B, C, F, T)."""
        if self.runtime is not None:
            return torch.from_numpy(self.runtime(features)).softmax(dim=1).numpy()
        net = self.on_device(CPU)
        return net(channels_last(features)).float().softmax(dim=1).numpy()


def undeployable(ckpt: dict) -> str | None:
    """Why a checkpoint cannot score new recordings on its own, or None when it can.

    >>> undeployable({"norm": {"kind": "group", "groups": {}}}) is not None
    True
    >>> undeployable({"norm": {"mean": 0.0, "std": 1.0}}) is None
    True
    """
    if (ckpt.get("norm") or {}).get("kind") == "group":
        return (
            "it was trained with train.norm=group, which standardises each group (speaker, site) "
            "on that group's own files, so it has no one input normalisation for new recordings; "
            "retrain with train.norm=global to predict, export or serve it"
        )
    return None


def from_checkpoint(path: str | Path, source: str | None = None) -> AudioModel:
    """The model of one checkpoint file, with its front-end and normalisation."""
    network, ckpt = load_checkpoint(path)
    if reason := undeployable(ckpt):
        raise ModelError(f"checkpoint {path} cannot score new recordings: {reason}")
    if not ckpt.get("frontend"):
        raise ModelError(
            f"checkpoint {path} does not record its front-end params; retrain it (dvc repro train)"
        )
    features = build(FeaturesConfig, ckpt["frontend"], "checkpoint.frontend")
    return AudioModel(
        Classifier(network, ckpt["norm"]).eval(),
        FrontEnd(features).eval(),
        features,
        list(ckpt["labels"]),
        ckpt,
        source or str(path),
    )


def select_checkpoint(models_dir: Path, split_dir: Path | None = None) -> Path:
    """The fold checkpoint of ``models_dir`` with the best validation macro-F1 (the first on a tie).

    Folds are those of ``split_dir`` when it exists (``models/`` persists between runs and may
    hold more), else every ``fold_<n>`` with a checkpoint. Test scores are never consulted.
    """
    names = (
        fold_names(split_dir)
        if split_dir is not None and Path(split_dir).is_dir()
        else [p.parent.name for p in Path(models_dir).glob(f"fold_*/{CHECKPOINT}")]
    )
    paths = [Path(models_dir) / n / CHECKPOINT for n in sorted(names, key=lambda n: int(n[5:]))]
    missing = [p for p in paths if not p.is_file()]
    if not paths or missing:
        raise MissingInputError(
            f"no trained model at {missing[0] if missing else models_dir / 'fold_<n>' / CHECKPOINT}"
            " (run: dvc repro train, or pass --model a checkpoint or an MLflow model URI)"
        )
    return paths[best_fold([load_checkpoint(p)[1] for p in paths])]


def best_fold(checkpoints: list[dict]) -> int:
    """The position of the checkpoint with the best validation macro-F1 (the first on a tie): the
    model a cross-validation hands on. Test scores are never consulted.

    >>> best_fold([{"val_macro_f1": 0.5}, {"val_macro_f1": 0.7}, {"val_macro_f1": 0.7}])
    1
    """
    scores = [float(c.get("val_macro_f1", float("-inf"))) for c in checkpoints]
    return scores.index(max(scores))


def mlflow_checkpoint(model_dir: Path) -> Path:
    """The checkpoint inside a downloaded MLflow Model folder (its ``MLmodel`` names it)."""
    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise ModelError(f"{model_dir} is not an MLflow Model (no MLmodel file)")
    flavor = yaml.safe_load(mlmodel.read_text()).get("flavors", {}).get("python_function", {})
    rel = (flavor.get("artifacts") or {}).get(ARTIFACT, {}).get("path")
    path = (model_dir / rel).resolve() if rel else None
    if path is None or model_dir.resolve() not in path.parents or not path.is_file():
        raise ModelError(
            f"the MLflow Model at {model_dir} is not an audioclf model (no checkpoint)"
        )
    return path


def is_model_uri(source: str | Path) -> bool:
    """Whether ``source`` names an MLflow model by URI (``models:/``, ``runs:/``, ``<scheme>://``).

    >>> is_model_uri("models:/audioclf-esc50/3"), is_model_uri("models/fold_0/best.pt")
    (True, False)
    """
    text = str(source)
    return "://" in text or text.startswith(("models:/", "runs:/"))


@contextlib.contextmanager
def checkpoint_file(
    source: str | Path, *, split_dir: Path | None = None, tracking_uri: str | None = None
) -> Iterator[tuple[Path, str]]:
    """The checkpoint file a model source names, and the source's name for reports.

    An MLflow model URI's model is downloaded into a temporary folder that lasts as long as the
    ``with`` block.

    Args:
        source: ``path/to/best.pt``; a folder of ``fold_<n>/best.pt`` (the best by validation
            macro-F1); a folder with an ``MLmodel`` file; ``models:/<name>/<version>``,
            ``models:/<name>@<alias>`` or ``runs:/<run id>/model``.
        split_dir: the split folder naming the folds of a ``models/`` folder.
        tracking_uri: the MLflow store a model URI is looked up in (needed only for one).

    Yields:
        (checkpoint path, source name).
    """
    text = str(source)
    if is_model_uri(text):
        if tracking_uri is None:
            raise ValueError(f"an MLflow model URI ({text}) needs the tracking URI of its store")
        with _downloaded(text, tracking_uri) as local:
            yield mlflow_checkpoint(local), text
        return
    path = Path(source)
    if path.is_file():
        yield path, text
    elif (path / "MLmodel").is_file():
        yield mlflow_checkpoint(path), text
    elif path.is_dir():
        best = select_checkpoint(path, split_dir)
        yield best, str(best)
    else:
        raise MissingInputError(
            f"no model at {path}: pass a checkpoint (.pt), the models/ folder after dvc repro, "
            "or an MLflow model URI (models:/audioclf-<dataset>/<version>)"
        )


def load_model(
    source: str | Path, *, split_dir: Path | None = None, tracking_uri: str | None = None
) -> AudioModel:
    """The model of a checkpoint, a ``models/`` folder, an MLflow Model folder or URI (see
    :func:`checkpoint_file` for the arguments)."""
    with checkpoint_file(source, split_dir=split_dir, tracking_uri=tracking_uri) as (path, name):
        return from_checkpoint(path, source=name)


@contextlib.contextmanager
def _downloaded(uri: str, tracking_uri: str) -> Iterator[Path]:
    import mlflow

    with tempfile.TemporaryDirectory(prefix="audioclf-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri, registry_uri=tracking_uri
            )
        except mlflow.exceptions.MlflowException as exc:
            raise ModelError(
                f"cannot fetch the MLflow model {uri} from {tracking_uri}: "
                f"{str(exc).splitlines()[0]} (check the name and version in the MLflow UI, or "
                "MLFLOW_TRACKING_URI)"
            ) from exc
        yield Path(local)
