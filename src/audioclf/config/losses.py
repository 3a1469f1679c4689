"""Typed params of the losses: ``loss_params.<loss>``, one config dataclass per loss.

The ``loss`` param names an entry of :data:`LOSS_CONFIGS`; its builder is the entry of
the same name in :data:`audioclf.training.losses.LOSSES`.
"""

from __future__ import annotations

import dataclasses

from audioclf.config.schema import check, choice

WEIGHT_METHODS = (
    "balanced",
    "inverse",
    "sqrt",
)  # class weights from training counts (audioclf.training.losses)


def _check_smoothing(value: float, key: str) -> None:
    check(0 <= value < 1, f"{key}.label_smoothing", f"must be in [0, 1), got {value}")


@dataclasses.dataclass(frozen=True)
class CEConfig:
    """``loss: ce``: cross-entropy, optionally with label smoothing."""

    label_smoothing: float = 0.0

    def __post_init__(self):
        _check_smoothing(self.label_smoothing, "loss_params.ce")


@dataclasses.dataclass(frozen=True)
class WeightedCEConfig:
    """``loss: weighted_ce``: cross-entropy with class weights from the training counts."""

    weights: str = "balanced"
    label_smoothing: float = 0.0

    def __post_init__(self):
        choice(self.weights, WEIGHT_METHODS, "loss_params.weighted_ce.weights")
        _check_smoothing(self.label_smoothing, "loss_params.weighted_ce")


@dataclasses.dataclass(frozen=True)
class FocalConfig:
    """``loss: focal``: ``-alpha_c (1 - p_c)^gamma log p_c``; ``alpha`` null (all 1) or a weight method."""

    gamma: float = 2.0
    alpha: str | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        check(self.gamma >= 0, "loss_params.focal.gamma", f"must be >= 0, got {self.gamma}")
        check(
            self.alpha is None or self.alpha in WEIGHT_METHODS,
            "loss_params.focal.alpha",
            f"is {self.alpha!r}; allowed values: null, {', '.join(WEIGHT_METHODS)}",
        )
        _check_smoothing(self.label_smoothing, "loss_params.focal")


# the ``loss`` param -> its config class
LOSS_CONFIGS: dict[str, type] = {
    "ce": CEConfig,
    "weighted_ce": WeightedCEConfig,
    "focal": FocalConfig,
}
