"""Loading Hugging Face ``transformers`` weights, offline, with a new classifier head.

``model_params.<model>.pretrained`` names either a local folder (written by
``save_pretrained`` or ``huggingface-cli download --local-dir``) or a Hub model id
that must already be in the Hugging Face cache: training never downloads
(``local_files_only=True``), so a missing weight fails at once with instructions,
never after a network time-out and never as a silent random init. After loading,
only the classifier head may be missing or resized; any other missing weight is
an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from audioclf.config.frontends import MODEL_FRONTENDS
from audioclf.errors import UserError

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class PretrainedWeightsError(UserError, FileNotFoundError):
    """Pretrained weights that are not available locally, or that do not fit the model."""


def _how_to_get(name: str, key: str, model_cls: str = "<ModelClass>") -> str:
    return (
        f"On a machine with internet access run `huggingface-cli download {name} --local-dir <folder>` "
        f"(or in Python `{model_cls}.from_pretrained('{name}').save_pretrained('<folder>')`), copy the "
        f"folder here and set {key}=<folder>; or set {key}=null to train from scratch."
    )


def _looks_like_path(name: str) -> bool:
    # Hub ids are 'name' or 'owner/name'; anything else is meant as a folder
    return (
        name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def resolve_source(name: str, key: str, model_cls: str = "<ModelClass>") -> str:
    """The folder or Hub id to load ``name`` from, checked to hold a config and weights if a folder.

    A relative folder is taken from the working directory (a stage resolves one under the
    repository root first: :meth:`audioclf.config.Params.located`).

    Raises:
        PretrainedWeightsError: a folder that does not exist or lacks config/weights.
    """
    folder = Path(name).expanduser()
    folder = folder if folder.is_dir() else None
    if folder is None:
        if _looks_like_path(name):
            raise PretrainedWeightsError(
                f"{key}: folder {name!r} does not exist. {_how_to_get('<model id>', key, model_cls)}"
            )
        return name
    present = {p.name for p in folder.iterdir()}
    if "config.json" not in present or not present & set(WEIGHT_FILES):
        raise PretrainedWeightsError(
            f"{key}: folder {str(folder)!r} holds no Hugging Face model (needs config.json and one of "
            f"{', '.join(WEIGHT_FILES)}; found {sorted(present)[:8] or 'nothing'}). "
            f"{_how_to_get('<model id>', key, model_cls)}"
        )
    return str(folder)


def load_pretrained(
    model_cls: Any, name: str, key: str, *, head_prefix: str, **overrides: Any
) -> nn.Module:
    """Load ``model_cls.from_pretrained(name)`` offline, in float32, with a new head.

    Args:
        model_cls: a ``transformers`` model class, e.g. ``ASTForAudioClassification``.
        name: Hub id (from the cache) or folder.
        key: the params key naming ``name``, for messages.
        head_prefix: state-dict prefix of the classifier head, the only part allowed
            to be newly initialised (e.g. ``"classifier."``).
        overrides: config values, e.g. ``num_labels``.

    Raises:
        PretrainedWeightsError: not available offline, or weights other than the head missing.
    """
    source = resolve_source(name, key, model_cls.__name__)
    try:
        model, info = model_cls.from_pretrained(
            source,
            local_files_only=True,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **overrides,
        )
    except OSError as exc:  # transformers reports 'not in the cache and offline' as OSError
        from huggingface_hub.constants import HF_HUB_CACHE

        raise PretrainedWeightsError(
            f"{key}: pretrained weights {name!r} are neither a local folder nor in the Hugging Face cache "
            f"({HF_HUB_CACHE}), and training never downloads. "
            f"{_how_to_get(name, key, model_cls.__name__)} ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    new = set(info.get("missing_keys", ())) | {m[0] for m in info.get("mismatched_keys", ())}
    not_head = sorted(k for k in new if not k.startswith(head_prefix))
    if not_head:
        raise PretrainedWeightsError(
            f"{key}: {name!r} lacks {len(not_head)} weights outside the classifier head (e.g. {not_head[:3]}); "
            f"they would be randomly initialised. Is it a checkpoint of {model_cls.__name__}?"
        )
    return model.float()


# ASTFeatureExtractor's defaults (AudioSet's filterbank mean and std) and ImageNet's, used where
# a checkpoint's folder or cache entry holds no preprocessor_config.json
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PREPROCESSOR_FILE = "preprocessor_config.json"
STATISTICS_KINDS = ("fbank", "imagenet")  # front-ends normalised with the checkpoint's statistics


def preprocessor_config(name: str, key: str) -> dict:
    """The checkpoint's ``preprocessor_config.json`` (its feature extractor or image processor
    settings) as plain JSON, from its folder or the Hugging Face cache; ``{}`` if it has none."""
    source = resolve_source(name, key)
    path: str | Path | None = Path(source) / PREPROCESSOR_FILE
    if not Path(source).is_dir():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, PREPROCESSOR_FILE)
        path = found if isinstance(found, str) else None
    if path is None or not Path(path).is_file():
        return {}
    config = json.loads(Path(path).read_text())
    return config if isinstance(config, dict) else {}


def input_statistics(model: str, cfg: Any, kind: str) -> dict | None:
    """The input normalisation a pretrained model was trained with, on its own front-end.

    AST on ``fbank``: ``(x - mean) / (2 std)`` with its feature extractor's ``mean`` and ``std``
    (AudioSet's by default), as ``ASTFeatureExtractor`` normalises; the ImageNet CNNs on
    ``imagenet``: its image processor's ``image_mean`` and ``image_std`` per colour
    (ImageNet's by default), which also turn the one channel into three.

    Returns:
        ``{"kind": "pretrained", "mean", "std", "source"}`` (a checkpoint's ``norm``), or None
        for a model trained from scratch or on another front-end (then the training
        split's statistics are used).
    """
    name = getattr(cfg, "pretrained", None)
    if not name or kind not in STATISTICS_KINDS or kind != MODEL_FRONTENDS.get(model):
        return None
    config = preprocessor_config(name, f"model_params.{model}.pretrained")
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
