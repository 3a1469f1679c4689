"""The phase ladder (the rungs of the hand-written reference reports) as data, and the check that a phase can run in this checkout.

A phase is a name (the DVC experiment name), a title (its row in ``reports/phases.md``)
and the ``-S key=value`` overrides that turn the workspace ``params.yaml`` into it; the
rest of the params come from the workspace. Before anything is queued, each phase's
params are built and validated with :func:`audioclf.config.parse_params`, so a phase
that needs a key, model or loss this checkout lacks, or pretrained weights that are
not on this machine (or BirdNET's model, without the ``birdnet`` extra; openSMILE, without the
``opensmile`` extra), is reported as
skipped with the reason instead of failing in the queue or vanishing from the table.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from audioclf.config import parse_params
from audioclf.features.birdnet import missing as birdnet_missing
from audioclf.features.opensmile import FEATURE_SETS
from audioclf.features.opensmile import missing as opensmile_missing


@dataclass(frozen=True)
class Phase:
    """One rung of the ladder: experiment ``name``, table ``title`` and params ``overrides``."""

    name: str
    title: str
    overrides: tuple[str, ...]


# The reference reports' ladder (Phase 0 -> 2B -> 3): each step changes one thing from the one before.
PHASES: tuple[Phase, ...] = (
    Phase("baseline", "CNN + CE", ("model=cnn", "loss=ce")),
    Phase(
        "wce-balanced",
        "CNN + weighted CE (balanced)",
        ("model=cnn", "loss=weighted_ce", "loss_params.weighted_ce.weights=balanced"),
    ),
    Phase(
        "wce-sqrt",
        "CNN + weighted CE (sqrt)",
        ("model=cnn", "loss=weighted_ce", "loss_params.weighted_ce.weights=sqrt"),
    ),
    Phase("cnn-focal", "CNN + focal", ("model=cnn", "loss=focal")),
    Phase("cnnv2-focal", "CNNv2 + focal", ("model=cnn_v2", "loss=focal")),
    # AST reads its own front-end, Kaldi filterbanks (features.kind: auto); both need downloaded weights
    Phase("ast-focal", "AST + focal (fbank)", ("model=ast", "loss=focal")),
    Phase(
        "ast-focal-aug",
        "AST + focal + SpecAugment + MixUp",
        ("model=ast", "loss=focal", "augment.specaugment.p=0.8", "augment.mixup.p=0.5"),
    ),
    # runs offline: the BirdNET v2.4 model ships in the birdnet extra (CC BY-NC-SA 4.0)
    Phase("birdnet-linear", "BirdNET embeddings + linear head", ("model=birdnet", "loss=ce")),
    # the speech-emotion baseline: openSMILE's functionals (the opensmile extra; audEERING's
    # research licence) and a linear SVM, C chosen on validation; then each group (speaker)
    # standardised on its own files (transductive)
    Phase(
        "compare-svm",
        "ComParE + linear SVM",
        (
            "model=svm",
            "features.kind=compare",
            "model_params.svm.kernel=linear",
            "train.norm=global",
        ),
    ),
    Phase(
        "compare-svm-group",
        "ComParE + linear SVM + speaker normalisation (train.norm: group, transductive)",
        (
            "model=svm",
            "features.kind=compare",
            "model_params.svm.kernel=linear",
            "train.norm=group",
        ),
    ),
    # not a rung: the baseline on a split that ignores recording groups, to measure what leakage
    # adds to the test scores (compared with the baseline unpaired: its test files differ)
    Phase(
        "leaky-split",
        "CNN + CE, leaky split (control)",
        ("model=cnn", "loss=ce", "split.leaky=true"),
    ),
)

# files a folder of Hugging Face weights holds (config plus one of the weight formats)
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.003"`` -> ``("train.lr", 0.003)``; the value is read as YAML, as DVC reads it.

    >>> parse_override("params.yaml:model_params.ast.pretrained=null")
    ('model_params.ast.pretrained', None)
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not key=value")
    key = key.strip()
    if ":" in key:
        path, _, key = key.rpartition(":")
        if Path(path).name != "params.yaml":
            raise ValueError(
                f"override {text!r}: only params.yaml keys can be overridden, not {path}"
            )
    return key, yaml.safe_load(value) if value.strip() else ""


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """A copy of ``raw`` params with the overrides set; like ``dvc exp run -S``, only existing keys.

    Raises:
        ValueError: an override is malformed or names a key params.yaml lacks.
    """
    out = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        node, parts = out, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(
                    f"-S {key}: params.yaml has no key '{'.'.join(parts[: i + 1])}' "
                    f"(not available in this checkout)"
                )
            if i < len(parts) - 1:
                node = node[part]
        node[parts[-1]] = value
    return out


def hub_cache_has(model_id: str, cache_dir: str | Path | None = None) -> bool:
    """Whether a Hub model id has its config and weights in the local Hugging Face cache
    (``cache_dir``; None: the default, ``HF_HUB_CACHE`` or ``~/.cache/huggingface/hub``)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(model_id, name, cache_dir=cache_dir), str)

    return cached("config.json") and any(cached(name) for name in WEIGHT_FILES)


def pretrained_problem(raw: dict, cache_dir: str | Path | None = None) -> str | None:
    """Why the selected model's ``pretrained`` weights cannot be loaded offline, or None if they can
    (or the model takes none). A folder (relative ones also under ``DVC_ROOT``) needs a
    ``config.json`` and weights; a Hub id must be in the Hugging Face cache."""
    model = raw.get("model")
    name = ((raw.get("model_params") or {}).get(model) or {}).get("pretrained")
    if not name:
        return None
    key = f"model_params.{model}.pretrained"
    folders = [Path(name).expanduser()]
    if not folders[0].is_absolute() and os.environ.get("DVC_ROOT"):
        folders.append(Path(os.environ["DVC_ROOT"]) / name)
    for folder in folders:
        if folder.is_dir():
            present = {p.name for p in folder.iterdir()}
            if "config.json" in present and present & set(WEIGHT_FILES):
                return None
            return f"{key}: folder {str(folder)!r} holds no config.json with weights"
    if (
        name.count("/") <= 1
        and not name.startswith((".", "/", "~"))
        and hub_cache_has(name, cache_dir)
    ):
        return None
    return (
        f"{key}: weights {name!r} not available locally (no such folder, not in the Hugging Face cache); "
        f"download them where there is internet and set {key}=<folder>, or null to train from scratch"
    )


def check_phase(
    raw: dict, overrides: list[str] | tuple[str, ...], cache_dir: str | Path | None = None
) -> str | None:
    """None if the overridden params are valid and their weights present (``cache_dir``: the Hugging
    Face cache to look in; None: the default) or, for BirdNET's front-end, its extra installed;
    else the reason."""
    try:
        resolved = apply_overrides(raw, overrides)
        params = parse_params(resolved)
    except ValueError as err:  # bad override, or ParamsError naming the key and the allowed values
        return str(err)
    if params.features.kind == "birdnet":
        return birdnet_missing()
    if params.features.kind in FEATURE_SETS:
        return opensmile_missing(params.features.kind)
    return pretrained_problem(resolved, cache_dir)
