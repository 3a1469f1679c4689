"""Typed, validated view of ``params.yaml``.

Every stage calls :func:`load_params` first, so a typo'd key or a bad value anywhere
in the file fails before any work starts, with a message naming the key and what
would be accepted. Library code receives these dataclasses, never the raw dict.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Optional

import yaml

from audioclf.data_config import EmodbConfig, Esc50Config, FolderConfig, XenocantoConfig
from audioclf.features_config import FeaturesConfig


class ParamsError(ValueError):
    """A params key is unknown, missing or holds a bad value."""


def check(ok: bool, key: str, message: str) -> None:
    """Raise :class:`ParamsError` naming ``key`` unless ``ok``."""
    if not ok:
        raise ParamsError(f"params: '{key}' {message}")


def build(cls: type, raw: Any, key: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, rejecting unknown keys and wrong types.

    Args:
        cls: a dataclass whose field annotations describe the accepted values.
        raw: the mapping read from YAML (``None`` means all defaults).
        key: dotted path of ``raw`` inside params.yaml, used in messages.

    Returns:
        An instance of ``cls``; its ``__post_init__`` checks value ranges.
    """
    raw = {} if raw is None else raw
    check(isinstance(raw, dict), key, f"must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    check(not unknown, f"{key}.{unknown[0]}" if unknown else key,
          f"is not a known key; allowed keys under '{key}': {', '.join(names)}")
    values = {}
    for f in dataclasses.fields(cls):
        sub = f"{key}.{f.name}" if key else f.name
        if f.name in raw:
            values[f.name] = _coerce(hints[f.name], raw[f.name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"params: '{sub}' is required but missing")
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            check(type(None) in args, key, "must not be null")
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin is tuple:
        check(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        check(len(value) == len(args), key, f"must have {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is float:
        check(isinstance(value, (int, float)) and not isinstance(value, bool), key,
              f"must be a number, got {value!r}")
        return float(value)
    if hint is int:
        check(isinstance(value, int) and not isinstance(value, bool), key,
              f"must be an integer, got {value!r}")
        return value
    if hint is bool:
        check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if hint is str:
        check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"unsupported annotation {hint!r} for {key}")


def choice(value: str, choices: typing.Iterable[str], key: str) -> None:
    """Check that ``value`` is one of ``choices``, naming them if not."""
    choices = sorted(choices)
    check(value in choices, key, f"is {value!r}; allowed values: {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """The embedded bird-call-like dataset (see :mod:`audioclf.datasets.synthetic`)."""

    n_classes: int = 24
    max_clips_per_class: int = 120
    imbalance: float = 20.0
    clips_per_recording: tuple[int, int] = (2, 5)
    clip_seconds: float = 4.0
    sample_rate: int = 22050
    snr_db: tuple[float, float] = (-6.0, 12.0)

    def __post_init__(self):
        check(self.n_classes >= 2, "data.synthetic.n_classes", f"must be >= 2, got {self.n_classes}")
        check(self.imbalance >= 1, "data.synthetic.imbalance", f"must be >= 1, got {self.imbalance}")
        lo, hi = self.clips_per_recording
        check(1 <= lo <= hi, "data.synthetic.clips_per_recording",
              f"must be [min, max] with 1 <= min <= max, got {list(self.clips_per_recording)}")
        check(self.max_clips_per_class >= 3 * lo, "data.synthetic.max_clips_per_class",
              f"must allow 3 recordings of {lo} clips, got {self.max_clips_per_class}")
        check(self.clip_seconds > 0, "data.synthetic.clip_seconds", f"must be positive, got {self.clip_seconds}")
        check(self.sample_rate >= 8000, "data.synthetic.sample_rate", f"must be >= 8000, got {self.sample_rate}")
        check(self.snr_db[0] <= self.snr_db[1], "data.synthetic.snr_db", f"must be [low, high], got {list(self.snr_db)}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the audio comes from, and how real datasets are downloaded.

    ``archive`` points at a local copy of a real dataset (a zip, or the folder it
    extracts to) and skips the download. Downloads are cached in ``download_dir``,
    outside the DVC outputs, so a rerun or an interrupted download never starts over.
    Relative paths are resolved against ``DVC_ROOT`` inside DVC experiments.
    """

    archive: Optional[str] = None
    download_dir: str = "data/downloads"
    retries: int = 4            # extra attempts after a 429, 5xx or dropped connection
    backoff_s: float = 2.0      # wait before retry k: backoff_s * 2**k seconds
    timeout_s: float = 60.0     # per request
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    esc50: Esc50Config = dataclasses.field(default_factory=Esc50Config)
    emodb: EmodbConfig = dataclasses.field(default_factory=EmodbConfig)
    xenocanto: XenocantoConfig = dataclasses.field(default_factory=XenocantoConfig)
    folder: FolderConfig = dataclasses.field(default_factory=FolderConfig)

    def __post_init__(self):
        check(self.archive is None or self.archive.strip() != "", "data.archive",
              "must be null or the path of a zip or folder")
        check(self.download_dir.strip() != "", "data.download_dir", "must be a folder path")
        check(self.retries >= 0, "data.retries", f"must be >= 0, got {self.retries}")
        check(self.backoff_s >= 0, "data.backoff_s", f"must be >= 0, got {self.backoff_s}")
        check(self.timeout_s > 0, "data.timeout_s", f"must be positive, got {self.timeout_s}")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Grouped, stratified train/val/test fractions."""

    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    leaky: bool = False

    def __post_init__(self):
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            check(0 < value < 1, f"split.{name}", f"must be a fraction in (0, 1), got {value}")
        total = self.train + self.val + self.test
        check(abs(total - 1) < 1e-6, "split", f"train + val + test must sum to 1, got {total:g}")


NORMS = ("global", "band")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, early stopping and input normalisation.

    ``norm`` picks the statistics computed on the training split: ``global`` is one
    mean and std per feature channel, ``band`` one per channel and frequency band.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 8
    grad_clip: float = 5.0
    norm: str = "global"

    def __post_init__(self):
        choice(self.norm, NORMS, "train.norm")
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            check(value >= 1, f"train.{name}", f"must be >= 1, got {value}")
        check(self.lr > 0, "train.lr", f"must be positive, got {self.lr}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.grad_clip > 0, "train.grad_clip", f"must be positive, got {self.grad_clip}")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 64

    def __post_init__(self):
        check(self.batch_size >= 1, "evaluate.batch_size", f"must be >= 1, got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class Params:
    """The whole of params.yaml, validated."""

    dataset: str
    model: str
    loss: str
    seed: int
    data: DataConfig
    split: SplitConfig
    features: FeaturesConfig
    model_params: dict[str, Any]
    train: TrainConfig
    evaluate: EvaluateConfig
    raw: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def model_config(self) -> Any:
        """The architecture config of the selected model."""
        return self.model_params[self.model]


_SECTIONS = {"data": DataConfig, "split": SplitConfig, "features": FeaturesConfig,
             "train": TrainConfig, "evaluate": EvaluateConfig}
_TOP_LEVEL = ("dataset", "model", "loss", "seed", "model_params", *_SECTIONS)


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params mapping (as read from params.yaml) into :class:`Params`."""
    # the registries are needed to validate names only; importing them here keeps a
    # stage's import graph (its DVC code deps) to the modules that shape its outputs
    from audioclf.datasets import DATASETS
    from audioclf.losses import LOSSES
    from audioclf.models import MODEL_CONFIGS

    check(isinstance(raw, dict), "params.yaml", "must be a mapping at the top level")
    unknown = sorted(set(raw) - set(_TOP_LEVEL))
    check(not unknown, unknown[0] if unknown else "",
          f"is not a known key; allowed top-level keys: {', '.join(_TOP_LEVEL)}")
    for key in ("dataset", "model", "loss"):
        check(isinstance(raw.get(key), str), key, f"must be a string, got {raw.get(key)!r}")
    choice(raw["dataset"], DATASETS, "dataset")
    choice(raw["model"], MODEL_CONFIGS, "model")
    choice(raw["loss"], LOSSES, "loss")
    seed = _coerce(int, raw.get("seed"), "seed")
    model_raw = raw.get("model_params") or {}
    check(isinstance(model_raw, dict), "model_params", "must be a mapping of model name to config")
    for name in model_raw:
        choice(name, MODEL_CONFIGS, f"model_params.{name}")
    model_params = {name: build(cfg_cls, model_raw.get(name), f"model_params.{name}")
                    for name, cfg_cls in MODEL_CONFIGS.items()}
    sections = {name: build(cls, raw.get(name), name) for name, cls in _SECTIONS.items()}
    return Params(dataset=raw["dataset"], model=raw["model"], loss=raw["loss"], seed=seed,
                  model_params=model_params, raw=raw, **sections)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raises :class:`ParamsError` on any bad key or value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path} (run from the repository root)")
    with path.open() as fh:
        raw = yaml.safe_load(fh)
    return parse_params(raw)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params to dotted keys, e.g. ``{"train.lr": 0.001}``."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
