"""Typed, validated view of ``params.yaml``.

Every stage calls :func:`load_params` first, so a typo'd key or a bad value anywhere
in the file fails before any work starts, with a message naming the key and what
would be accepted. Library code receives these dataclasses, never the raw dict.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import yaml

from audioclf.data_config import EmodbConfig, Esc50Config, FolderConfig, XenocantoConfig
from audioclf.features_config import FeaturesConfig
from audioclf.schema import ParamsError, _coerce, build, check, choice, flatten  # noqa: F401 (re-exported)
from audioclf.train_config import NORMS, AugmentConfig, TrainConfig  # noqa: F401 (re-exported)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """The embedded bird-call-like dataset (see :mod:`audioclf.datasets.synthetic`)."""

    n_classes: int = 24
    max_clips_per_class: int = 200
    imbalance: float = 20.0
    clips_per_recording: tuple[int, int] = (2, 5)
    clip_seconds: float = 4.0
    sample_rate: int = 22050
    snr_db: tuple[float, float] = (0.0, 15.0)

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

    strategy: str = "holdout"
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    k: int = 5
    fold_column: str = "fold"
    leaky: bool = False

    def __post_init__(self):
        from audioclf.split import STRATEGIES

        choice(self.strategy, STRATEGIES, "split.strategy")
        check(self.k >= 2, "split.k", f"must be >= 2, got {self.k}")
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            check(0 < value < 1, f"split.{name}", f"must be a fraction in (0, 1), got {value}")
        total = self.train + self.val + self.test
        check(abs(total - 1) < 1e-6, "split", f"train + val + test must sum to 1, got {total:g}")


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """Leakage audit: which checks fail the pipeline, and the near-duplicate threshold."""

    near_duplicates: str = "error"
    max_ber: float = 0.2
    pretrained_ids: tuple[str, ...] = ()
    pretrained_overlap: str = "error"

    def __post_init__(self):
        choice(self.near_duplicates, ("error", "warn"), "audit.near_duplicates")
        choice(self.pretrained_overlap, ("error", "warn"), "audit.pretrained_overlap")
        check(0 < self.max_ber < 0.5, "audit.max_ber", f"must be in (0, 0.5), got {self.max_ber}")


@dataclasses.dataclass(frozen=True)
class BucketsConfig:
    """Training-frequency buckets: head >= ``head`` training clips, tail <= ``tail``, mid between."""

    head: int = 20
    tail: int = 5

    def __post_init__(self):
        check(self.tail >= 0, "evaluate.buckets.tail", f"must be >= 0, got {self.tail}")
        check(self.head > self.tail, "evaluate.buckets.head", f"must be > tail ({self.tail}), got {self.head}")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 64
    bootstrap: int = 1000
    ci_level: float = 0.95
    ece_bins: int = 15
    buckets: BucketsConfig = dataclasses.field(default_factory=BucketsConfig)

    def __post_init__(self):
        check(self.batch_size >= 1, "evaluate.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.bootstrap >= 1, "evaluate.bootstrap", f"must be >= 1, got {self.bootstrap}")
        check(0 < self.ci_level < 1, "evaluate.ci_level", f"must be in (0, 1), got {self.ci_level}")
        check(self.ece_bins >= 1, "evaluate.ece_bins", f"must be >= 1, got {self.ece_bins}")


@dataclasses.dataclass(frozen=True)
class Params:
    """The whole of params.yaml, validated."""

    dataset: str
    model: str
    loss: str
    seed: int
    data: DataConfig
    split: SplitConfig
    audit: AuditConfig
    features: FeaturesConfig
    model_params: dict[str, Any]
    loss_params: dict[str, Any]
    train: TrainConfig
    augment: AugmentConfig
    evaluate: EvaluateConfig
    raw: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def model_config(self) -> Any:
        """The architecture config of the selected model."""
        return self.model_params[self.model]

    @property
    def loss_config(self) -> Any:
        """The config of the selected loss."""
        return self.loss_params[self.loss]


_SECTIONS = {"data": DataConfig, "split": SplitConfig, "audit": AuditConfig, "features": FeaturesConfig,
             "train": TrainConfig, "augment": AugmentConfig, "evaluate": EvaluateConfig}
_TOP_LEVEL = ("dataset", "model", "loss", "seed", "model_params", "loss_params", *_SECTIONS)


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params mapping (as read from params.yaml) into :class:`Params`."""
    # the registries are needed to validate names only; importing them here keeps a
    # stage's import graph (its DVC code deps) to the modules that shape its outputs
    from audioclf.datasets import DATASETS
    from audioclf.losses import LOSS_CONFIGS
    from audioclf.models import MODEL_CONFIGS

    check(isinstance(raw, dict), "params.yaml", "must be a mapping at the top level")
    unknown = sorted(set(raw) - set(_TOP_LEVEL))
    check(not unknown, unknown[0] if unknown else "",
          f"is not a known key; allowed top-level keys: {', '.join(_TOP_LEVEL)}")
    for key in ("dataset", "model", "loss"):
        check(isinstance(raw.get(key), str), key, f"must be a string, got {raw.get(key)!r}")
    choice(raw["dataset"], DATASETS, "dataset")
    choice(raw["model"], MODEL_CONFIGS, "model")
    choice(raw["loss"], LOSS_CONFIGS, "loss")
    seed = _coerce(int, raw.get("seed"), "seed")
    model_params = _per_name(raw.get("model_params"), MODEL_CONFIGS, "model_params", "model")
    loss_params = _per_name(raw.get("loss_params"), LOSS_CONFIGS, "loss_params", "loss")
    sections = {name: build(cls, raw.get(name), name) for name, cls in _SECTIONS.items()}
    return Params(dataset=raw["dataset"], model=raw["model"], loss=raw["loss"], seed=seed,
                  model_params=model_params, loss_params=loss_params, raw=raw, **sections)


def _per_name(raw: Any, configs: dict[str, type], key: str, what: str) -> dict[str, Any]:
    """Validate a mapping of registry name -> config (``model_params``, ``loss_params``)."""
    raw = raw or {}
    check(isinstance(raw, dict), key, f"must be a mapping of {what} name to config")
    for name in raw:
        choice(name, configs, f"{key}.{name}")
    return {name: build(cfg_cls, raw.get(name), f"{key}.{name}") for name, cfg_cls in configs.items()}


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raises :class:`ParamsError` on any bad key or value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path} (run from the repository root)")
    with path.open() as fh:
        raw = yaml.safe_load(fh)
    return parse_params(raw)
