"""The whole of ``params.yaml``, validated: :class:`Params`, :func:`parse_params`, :func:`load_params`.

Every stage calls :func:`load_params` first, so a typo'd key or a bad value anywhere
in the file fails before any work starts, with a message naming the key and what
would be accepted. Library code receives the typed section configs, never the raw dict.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from audioclf.config.data import DATASETS, AuditConfig, DataConfig, SplitConfig
from audioclf.config.evaluation import EvaluateConfig
from audioclf.config.features import FeaturesConfig
from audioclf.config.frontends import check_augment, for_model
from audioclf.config.heads import HEAD_CONFIGS
from audioclf.config.losses import LOSS_CONFIGS
from audioclf.config.models import MODEL_CONFIGS
from audioclf.config.schema import (
    ParamsError,
    build,
    check,
    choice,
    coerce,
    trainable_in_memory,
)
from audioclf.config.training import AugmentConfig, TrainConfig, TrainSpec
from audioclf.errors import MissingInputError


@dataclasses.dataclass(frozen=True)
class Params:
    """The whole of params.yaml, validated; ``features`` resolved for the model (its kind, and a
    pretrained front-end's fixed values: :func:`audioclf.config.frontends.for_model`)."""

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
    # ``features`` as params.yaml gives it, before the model resolved its kind (the features report)
    requested_features: FeaturesConfig | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def model_config(self) -> Any:
        """The architecture config of the selected model."""
        return self.model_params[self.model]

    @property
    def loss_config(self) -> Any:
        """The config of the selected loss."""
        return self.loss_params[self.loss]

    @property
    def train_seed(self) -> int:
        """The seed of training: ``train.seed``, or the top-level ``seed`` when that is null."""
        return self.seed if self.train.seed is None else self.train.seed

    def located(self, root: Path) -> Params:
        """These params with their relative paths resolved against the repository ``root``.

        ``data.archive`` and ``data.download_dir`` become ``root / path``; a pretrained model's relative folder does too when it is not in the working
        directory but under ``root``. A stage calls it once with :func:`audioclf.io.repo_root`
        (queued and ``--temp`` DVC experiments run in a throw-away copy of the repository);
        library code then takes paths as they are.
        """

        def under(path: str | None) -> str | None:
            return None if path is None else str(root / Path(path).expanduser())

        data = dataclasses.replace(
            self.data, archive=under(self.data.archive), download_dir=under(self.data.download_dir)
        )
        model_params = dict(self.model_params)
        name = getattr(self.model_config, "pretrained", None)
        if name and not Path(name).expanduser().exists() and (root / name).is_dir():
            model_params[self.model] = dataclasses.replace(
                self.model_config, pretrained=under(name)
            )
        return dataclasses.replace(self, data=data, model_params=model_params)

    def train_spec(self) -> TrainSpec:
        """What training reads of these params; its seed is :attr:`train_seed`."""
        return TrainSpec(
            model=self.model,
            model_config=self.model_config,
            loss=self.loss,
            loss_config=self.loss_config,
            train=self.train,
            augment=self.augment,
            seed=self.train_seed,
        )


SECTIONS = {
    "data": DataConfig,
    "split": SplitConfig,
    "audit": AuditConfig,
    "features": FeaturesConfig,
    "train": TrainConfig,
    "augment": AugmentConfig,
    "evaluate": EvaluateConfig,
}
_TOP_LEVEL = ("dataset", "model", "loss", "seed", "model_params", "loss_params", *SECTIONS)


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params mapping (as read from params.yaml) into :class:`Params`."""
    check(isinstance(raw, dict), "params.yaml", "must be a mapping at the top level")
    unknown = sorted(set(raw) - set(_TOP_LEVEL))
    check(
        not unknown,
        unknown[0] if unknown else "",
        f"is not a known key; allowed top-level keys: {', '.join(_TOP_LEVEL)}",
    )
    for key in ("dataset", "model", "loss"):
        check(isinstance(raw.get(key), str), key, f"must be a string, got {raw.get(key)!r}")
    choice(raw["dataset"], DATASETS, "dataset")
    choice(raw["model"], MODEL_CONFIGS, "model")
    choice(raw["loss"], LOSS_CONFIGS, "loss")
    seed = coerce(int, raw.get("seed"), "seed")
    check(
        0 <= seed < 2**32,
        "seed",
        f"must be in [0, 2**32 - 1] (what NumPy and scikit-learn take), got {seed}",
    )
    model_params = _per_name(raw.get("model_params"), MODEL_CONFIGS, "model_params", "model")
    chosen = model_params[raw["model"]]
    if hasattr(chosen, "parameters") and getattr(chosen, "pretrained", None) is None:
        # the model this run builds from its size keys (a checkpoint brings its own size)
        trainable_in_memory(chosen.parameters, f"model_params.{raw['model']}")
    loss_params = _per_name(raw.get("loss_params"), LOSS_CONFIGS, "loss_params", "loss")
    sections = {name: build(cls, raw.get(name), name) for name, cls in SECTIONS.items()}
    requested = sections["features"]
    # the front-end the model reads (features.kind: auto), with a pretrained one's fixed values
    sections["features"] = for_model(requested, raw["model"], model_params[raw["model"]])
    check_augment(sections["features"].kind, sections["augment"], sections["train"].norm)
    train = sections["train"]
    check(
        raw["model"] not in HEAD_CONFIGS or (train.devices == 1 and train.nodes == 1),
        "train.devices",
        f"model={raw['model']} is a scikit-learn head, fitted in one process: set "
        f"train.devices=1 and train.nodes=1 (got {train.devices} and {train.nodes})",
    )
    return Params(
        dataset=raw["dataset"],
        model=raw["model"],
        loss=raw["loss"],
        seed=seed,
        model_params=model_params,
        loss_params=loss_params,
        raw=raw,
        requested_features=requested,
        **sections,
    )


def _per_name(raw: Any, configs: dict[str, type], key: str, what: str) -> dict[str, Any]:
    """Validate a mapping of registry name -> config (``model_params``, ``loss_params``)."""
    raw = raw or {}
    check(isinstance(raw, dict), key, f"must be a mapping of {what} name to config")
    for name in raw:
        choice(name, configs, f"{key}.{name}")
    return {
        name: build(cfg_cls, raw.get(name), f"{key}.{name}") for name, cfg_cls in configs.items()
    }


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raises :class:`ParamsError` on any bad key or value."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(
            f"params file not found: {path} (run from the repository root, or pass --params)"
        )
    with path.open() as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ParamsError(f"params: {path} is not valid YAML ({exc})") from None
    return parse_params(raw)
