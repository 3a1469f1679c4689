"""``tune.yaml``, the settings of ``audioclf tune`` (:class:`TuneConfig`, :func:`load_tune`), and
its search space (:class:`Dimension`). No stage reads it, so it lives beside params.yaml, not in it.

The space maps params.yaml keys, dotted as for ``dvc exp run -S``, to what a trial may set them to:

* a list: one of its values (categorical), e.g. ``loss: [ce, weighted_ce]``;
* ``{low, high}``: a number in that range, an integer when both bounds are integers; ``log: true``
  samples on a log scale, ``step`` on a grid.

Only what the train stage reads can be searched (``model``, ``loss``, ``model_params``,
``loss_params``, ``train``, ``augment``): the features, split and data stay as the pipeline made
them, so every trial reads the same feature table and folds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from audioclf.config.params import Params, parse_params
from audioclf.config.schema import ParamsError, at_most, build, check, choice
from audioclf.errors import MissingInputError

METRICS = {"val_macro_f1": "maximize", "val_accuracy": "maximize", "val_loss": "minimize"}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")
# the params a trial may change: what the train stage reads (its params in dvc.yaml)
SEARCHABLE = ("model", "loss", "model_params.", "loss_params.", "train.", "augment.")
_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched key: ``choices`` (categorical) or ``low``/``high`` (int or float)."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def integer(self) -> bool:
        return self.choices is None and all(
            isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None
        )

    def values(self) -> list:
        """The values that bound this dimension: each choice, or the two ends of the range."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def suggest(self, trial) -> Any:
        """This dimension's value for an Optuna ``trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(
                self.key, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


def parse_dimension(key: str, raw: Any) -> Dimension:
    """One entry of ``tune.space``, checked (its key is checked against params by the caller)."""
    where = f"tune.space.{key}"
    check(
        key.startswith(SEARCHABLE) and key not in ("model_params", "loss_params"),
        where,
        "is not a key the train stage reads; tune searches model, loss, model_params.*, "
        "loss_params.*, train.* and augment.* (features, split and data: dvc exp run -S)",
    )
    if isinstance(raw, list):
        check(len(raw) >= 2, where, f"must list at least two values to choose from, got {raw!r}")
        for v in raw:
            check(
                v is None or isinstance(v, (bool, int, float, str)),
                where,
                f"choices must be numbers, strings, booleans or null, got {v!r}",
            )
        check(len(set(map(repr, raw))) == len(raw), where, f"lists a value twice: {raw!r}")
        return Dimension(key, choices=tuple(raw))
    check(
        isinstance(raw, dict),
        where,
        f"must be a list of values or a mapping with low and high, got {raw!r}",
    )
    unknown = sorted(set(raw) - _RANGE_KEYS)
    check(not unknown, f"{where}.{unknown[0] if unknown else ''}", "is not low, high, log or step")
    check("low" in raw and "high" in raw, where, "needs both low and high")
    low, high, step = (_number(raw.get(k), f"{where}.{k}") for k in ("low", "high", "step"))
    log = raw.get("log", False)
    check(isinstance(log, bool), f"{where}.log", f"must be true or false, got {log!r}")
    check(low < high, where, f"low must be below high, got {low} and {high}")
    check(not log or low > 0, f"{where}.low", f"must be > 0 on a log scale, got {low}")
    check(step is None or step > 0, f"{where}.step", f"must be > 0, got {step}")
    check(
        not (log and step), where, "takes log or step, not both (Optuna samples one or the other)"
    )
    return Dimension(key, low=low, high=high, log=log, step=step)


def _number(value: Any, key: str) -> float | int | None:
    """A bound as YAML gave it; ``1e-4`` (a string to YAML 1.1, which wants ``1.0e-4``) as a float."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParamsError(f"params: '{key}' must be a number, got {value!r}") from None


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """``tune.yaml``: the search (``audioclf tune``).

    Attributes:
        trials: the study's budget: trials that finish (complete or pruned), over all workers.
        timeout_s: stop starting trials after this many seconds (null: no limit).
        metric: the validation score to optimise (``val_loss`` is minimised).
        sampler: ``tpe`` (Optuna's default) or ``random``.
        seed: the sampler's seed; null = the top-level seed.
        pruner: ``median`` or ``halving`` (successive halving) on each epoch's score, or ``none``.
        storage: the study's database URL; null = ``data/tune/optuna.db`` (SQLite). Workers
            on several machines share a server database (PostgreSQL, MySQL).
        heartbeat_s: a running trial's worker writes a heartbeat this often; a trial silent for
            twice as long (its worker killed) is marked failed and run again.
        retries: how often a trial whose worker died is run again.
        space: params key -> values (:func:`parse_dimension`).
    """

    trials: int = 20
    timeout_s: float | None = None
    metric: str = "val_macro_f1"
    sampler: str = "tpe"
    seed: int | None = None
    pruner: str = "median"
    storage: str | None = None
    heartbeat_s: int = 60
    retries: int = 2
    space: Any = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check(self.trials >= 1, "tune.trials", f"must be >= 1, got {self.trials}")
        at_most(self.trials, 100_000, "tune.trials", "trials in one study")
        check(
            self.timeout_s is None or self.timeout_s > 0,
            "tune.timeout_s",
            f"must be > 0 or null, got {self.timeout_s}",
        )
        choice(self.metric, METRICS, "tune.metric")
        choice(self.sampler, SAMPLERS, "tune.sampler")
        choice(self.pruner, PRUNERS, "tune.pruner")
        check(self.heartbeat_s >= 1, "tune.heartbeat_s", f"must be >= 1, got {self.heartbeat_s}")
        check(self.retries >= 0, "tune.retries", f"must be >= 0, got {self.retries}")
        check(isinstance(self.space, dict), "tune.space", "must map params keys to values")

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def dimensions(self) -> list[Dimension]:
        return [parse_dimension(k, v) for k, v in self.space.items()]


def set_keys(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of params ``raw`` with dotted ``values`` set; every key must exist already.

    >>> set_keys({"train": {"lr": 0.001}}, {"train.lr": 0.01})
    {'train': {'lr': 0.01}}
    """
    out = {k: v for k, v in raw.items()}
    for key, value in values.items():
        node, parts = out, key.split(".")
        for i, part in enumerate(parts[:-1]):
            check(
                isinstance(node.get(part), dict),
                "tune.space." + key,
                f"names no params key ('{'.'.join(parts[: i + 1])}' is not a section of params.yaml)",
            )
            node[part] = dict(node[part])
            node = node[part]
        check(
            parts[-1] in node,
            "tune.space." + key,
            "names no params key (see params.yaml for the keys a section holds)",
        )
        node[parts[-1]] = value
    return out


def load_tune(path: str | Path, params: Params) -> TuneConfig:
    """Read ``tune.yaml`` and check it against ``params``: each value the space gives its key
    makes valid params with the rest of them.

    Raises:
        MissingInputError: no such file.
        ParamsError: a bad setting, or a space key or value params.yaml refuses; the message
            names the key, the value and what refused it.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(
            f"tune: {path} not found: the search's settings and space (see tune.yaml in the "
            "repository; or pass --config)"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"tune: {path} is not valid YAML ({exc})") from None
    try:
        cfg = build(TuneConfig, raw, "tune")
        check(bool(cfg.space), "tune.space", "names no params key to search")
        for dim in cfg.dimensions():
            for value in dim.values():
                candidate = set_keys(params.raw, {dim.key: value})
                try:
                    parse_params(candidate)
                except ParamsError as exc:
                    raise ParamsError(f"'tune.space.{dim.key}' allows {value!r}: {exc}") from None
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    return cfg
