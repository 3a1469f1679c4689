"""Training losses, chosen by the top-level ``loss`` param and configured in ``loss_params.<loss>``.

Every loss maps logits (B, C) and targets to a scalar. Targets are either class
indices (B,) or class probabilities (B, C) -- the soft labels MixUp produces -- so
every loss works with every augmentation.

Class weights for imbalance come from the training split's class counts ``n_c``
(``N`` examples, ``C`` classes):

* ``balanced``: ``N / (C * n_c)`` (scikit-learn's 'balanced'; the weight averaged
  over training examples is 1);
* ``inverse``: ``1 / n_c``, scaled to a mean of 1 over classes;
* ``sqrt``: ``1 / sqrt(n_c)``, scaled to a mean of 1 over classes (a milder correction).

``weighted_ce`` normalises by the summed weight of the targets (as
``nn.CrossEntropyLoss(weight=...)`` does), so there ``balanced`` and ``inverse``
give the same loss; as focal ``alpha`` they differ by a scale factor.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch
from torch import nn

WEIGHT_METHODS = ("balanced", "inverse", "sqrt")


def _check(ok: bool, key: str, message: str) -> None:
    from audioclf.config import check  # late: audioclf.config imports this module's registry

    check(ok, key, message)


def _check_smoothing(value: float, key: str) -> None:
    _check(0 <= value < 1, f"{key}.label_smoothing", f"must be in [0, 1), got {value}")


@dataclasses.dataclass(frozen=True)
class CEParams:
    """``loss: ce``: cross-entropy, optionally with label smoothing."""

    label_smoothing: float = 0.0

    def __post_init__(self):
        _check_smoothing(self.label_smoothing, "loss_params.ce")


@dataclasses.dataclass(frozen=True)
class WeightedCEParams:
    """``loss: weighted_ce``: cross-entropy with class weights from the training counts."""

    weights: str = "balanced"
    label_smoothing: float = 0.0

    def __post_init__(self):
        _check(self.weights in WEIGHT_METHODS, "loss_params.weighted_ce.weights",
               f"is {self.weights!r}; allowed values: {', '.join(WEIGHT_METHODS)}")
        _check_smoothing(self.label_smoothing, "loss_params.weighted_ce")


@dataclasses.dataclass(frozen=True)
class FocalParams:
    """``loss: focal``: ``-alpha_c (1 - p_c)^gamma log p_c``; ``alpha`` null (all 1) or a weight method."""

    gamma: float = 2.0
    alpha: Optional[str] = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        _check(self.gamma >= 0, "loss_params.focal.gamma", f"must be >= 0, got {self.gamma}")
        _check(self.alpha is None or self.alpha in WEIGHT_METHODS, "loss_params.focal.alpha",
               f"is {self.alpha!r}; allowed values: null, {', '.join(WEIGHT_METHODS)}")
        _check_smoothing(self.label_smoothing, "loss_params.focal")


def class_weights(counts: torch.Tensor, method: str) -> torch.Tensor:
    """Per-class weights (C,) from class counts (C,); see the module docstring.

    A class absent from the training split counts as one example (its weight is
    then the largest, and finite).

    >>> [round(w, 4) for w in class_weights(torch.tensor([10, 30]), "balanced").tolist()]
    [2.0, 0.6667]
    >>> [round(w, 4) for w in class_weights(torch.tensor([10, 30]), "sqrt").tolist()]
    [1.2679, 0.7321]
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"class weight method {method!r} is unknown; allowed: {', '.join(WEIGHT_METHODS)}")
    n = counts.double().clamp_min(1)
    if method == "balanced":
        w = n.sum() / (len(n) * n)
    else:
        w = 1 / n if method == "inverse" else 1 / n.sqrt()
        w = w / w.mean()
    return w.float()


def _soft(target: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    """Targets as probabilities (B, C): one-hot for indices (B,), then label smoothing."""
    probs = nn.functional.one_hot(target, n_classes).float() if target.dim() == 1 else target.float()
    return probs * (1 - smoothing) + smoothing / n_classes if smoothing else probs


class SoftCrossEntropy(nn.Module):
    """Cross-entropy with optional class weights and label smoothing, for hard or soft targets.

    With index targets it equals ``nn.CrossEntropyLoss(weight, label_smoothing=...)``:
    the sum of ``-w_c q_c log p_c`` (``q`` the smoothed target) divided by the summed
    weight of the unsmoothed targets.

    Args:
        weight: class weights (C,), or None for all ones.
        label_smoothing: mass spread uniformly over the classes.
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        logp = logits.float().log_softmax(dim=1)                      # (B, C)
        w = torch.ones(n_classes, device=logits.device) if self.weight is None else self.weight
        raw = _soft(target, n_classes, 0.0)                           # (B, C)
        q = _soft(target, n_classes, self.label_smoothing)            # (B, C)
        return -(q * w * logp).sum() / (raw * w).sum()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017), mean over the batch: ``-sum_c alpha_c q_c (1 - p_c)^gamma log p_c``.

    ``q`` is the (smoothed) target distribution; for an index target this is
    ``-alpha_t (1 - p_t)^gamma log p_t``. ``gamma = 0`` and no ``alpha`` is cross-entropy.

    Args:
        gamma: focusing exponent (>= 0).
        alpha: per-class weights (C,), or None.
        label_smoothing: mass spread uniformly over the classes.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        logp = logits.float().log_softmax(dim=1)                      # (B, C)
        focus = (1 - logp.exp()).clamp_min(0) ** self.gamma           # (B, C)
        per_class = -_soft(target, n_classes, self.label_smoothing) * focus * logp
        if self.alpha is not None:
            per_class = per_class * self.alpha
        return per_class.sum(dim=1).mean()


def _ce(cfg: CEParams, counts: torch.Tensor) -> tuple[nn.Module, torch.Tensor | None]:
    return SoftCrossEntropy(label_smoothing=cfg.label_smoothing), None


def _weighted_ce(cfg: WeightedCEParams, counts: torch.Tensor) -> tuple[nn.Module, torch.Tensor | None]:
    weight = class_weights(counts, cfg.weights)
    return SoftCrossEntropy(weight, cfg.label_smoothing), weight


def _focal(cfg: FocalParams, counts: torch.Tensor) -> tuple[nn.Module, torch.Tensor | None]:
    alpha = None if cfg.alpha is None else class_weights(counts, cfg.alpha)
    return FocalLoss(cfg.gamma, alpha, cfg.label_smoothing), alpha


# name -> (factory(config, class counts) -> (loss, class weights or None), config class)
LOSSES: dict[str, tuple[Callable, type]] = {
    "ce": (_ce, CEParams),
    "weighted_ce": (_weighted_ce, WeightedCEParams),
    "focal": (_focal, FocalParams),
}
LOSS_CONFIGS = {name: cfg for name, (_, cfg) in LOSSES.items()}


def build_loss(name: str, cfg, class_counts: torch.Tensor) -> tuple[nn.Module, dict[str, float]]:
    """Build loss ``name`` from its validated config and the training split's class counts (C,).

    Returns:
        The loss module and, for losses with class weights, their range
        (``class_weight_min``, ``class_weight_max``) for the tracker; else ``{}``.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(sorted(LOSSES))}")
    loss, weight = LOSSES[name][0](cfg, class_counts)
    info = {} if weight is None else {"class_weight_min": float(weight.min()), "class_weight_max": float(weight.max())}
    return loss, info
