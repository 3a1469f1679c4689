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

import os
from pathlib import Path
from typing import Any

from torch import nn

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

    Relative folders are looked up in the working directory, then under ``DVC_ROOT``
    (queued DVC experiments run in a temporary copy of the repository).

    Raises:
        PretrainedWeightsError: a folder that does not exist or lacks config/weights.
    """
    candidates = [Path(name).expanduser()]
    if not candidates[0].is_absolute() and os.environ.get("DVC_ROOT"):
        candidates.append(Path(os.environ["DVC_ROOT"]) / name)
    folder = next((c for c in candidates if c.is_dir()), None)
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
