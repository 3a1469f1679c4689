"""What the pretrained models take from their checkpoints beyond the weights (:mod:`audioclf.hub`
fetches and loads those): the record a run keeps of them, and the input statistics a
checkpoint was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audioclf.config.frontends import MODEL_FRONTENDS
from audioclf.hub import PREPROCESSOR_FILE, fetch, resolve_source


def pretrained_record(cfg: Any, model: str) -> dict[str, str]:
    """:meth:`Snapshot.record` of ``model_params.<model>``'s weights (fetched if need be), or ``{}``
    for a model trained from scratch or one without Hub weights."""
    name = getattr(cfg, "pretrained", None)
    if not name or not hasattr(cfg, "revision"):
        return {}
    return fetch(name, cfg.revision, f"model_params.{model}.pretrained").record()


# ASTFeatureExtractor's defaults (AudioSet's filterbank mean and std) and ImageNet's, used where
# a checkpoint's folder or cache entry holds no preprocessor_config.json
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STATISTICS_KINDS = ("fbank", "imagenet")  # front-ends normalised with the checkpoint's statistics


def preprocessor_config(name: str, key: str, revision: str | None = None) -> dict:
    """The checkpoint's ``preprocessor_config.json`` (its feature extractor or image processor
    settings) as plain JSON, from its folder or the Hugging Face cache; ``{}`` if it has none."""
    path = Path(resolve_source(name, key, revision)) / PREPROCESSOR_FILE
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    return config if isinstance(config, dict) else {}


def input_statistics(model: str, cfg: Any, kind: str) -> dict | None:
    """The input normalisation a pretrained model was trained with, on its own front-end.

    AST on ``fbank``: ``(x - mean) / (2 std)`` with its feature extractor's ``mean`` and ``std``
    (AudioSet's by default), as ``ASTFeatureExtractor`` normalises; the ImageNet CNNs on
    ``imagenet``: its image processor's ``image_mean`` and ``image_std`` per colour
    (ImageNet's by default), which also turn the one channel into three; ``hf`` on
    ``waveform``: none here (mean 0, std 1), its feature extractor normalises in the model.

    Returns:
        ``{"kind": "pretrained", "mean", "std", "source"}`` (a checkpoint's ``norm``), or None
        for a model trained from scratch or on another front-end (then the training
        split's statistics are used).
    """
    name = getattr(cfg, "pretrained", None)
    if name and kind == "waveform" == MODEL_FRONTENDS.get(model):  # the extractor normalises
        return {"kind": "pretrained", "mean": 0.0, "std": 1.0, "source": "feature extractor"}
    if not name or kind not in STATISTICS_KINDS or kind != MODEL_FRONTENDS.get(model):
        return None
    key = f"model_params.{model}.pretrained"
    config = preprocessor_config(name, key, getattr(cfg, "revision", None))
    source = f"{name}/{PREPROCESSOR_FILE}" if config else "defaults"
    if kind == "fbank":
        if config.get("do_normalize", True) is False:
            return {"kind": "pretrained", "mean": 0.0, "std": 1.0, "source": source}
        mean, std = config.get("mean", AUDIOSET_MEAN), config.get("std", AUDIOSET_STD)
        return {"kind": "pretrained", "mean": float(mean), "std": 2 * float(std), "source": source}
    mean, std = config.get("image_mean", IMAGENET_MEAN), config.get("image_std", IMAGENET_STD)
    return {
        "kind": "pretrained",
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "source": source,
    }
