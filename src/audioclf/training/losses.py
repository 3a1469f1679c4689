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

from collections.abc import Callable

import torch
from torch import nn

from audioclf.config.losses import WEIGHT_METHODS, CEConfig, FocalConfig, WeightedCEConfig


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
        raise ValueError(
            f"class weight method {method!r} is unknown; allowed: {', '.join(WEIGHT_METHODS)}"
        )
    n = counts.double().clamp_min(1)
    if method == "balanced":
        w = n.sum() / (len(n) * n)
    else:
        w = 1 / n if method == "inverse" else 1 / n.sqrt()
        w = w / w.mean()
    return w.float()


def _soft(target: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    """Targets as probabilities (B, C): one-hot for indices (B,), then label smoothing."""
    probs = (
        nn.functional.one_hot(target, n_classes).float() if target.dim() == 1 else target.float()
    )
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
        logp = logits.float().log_softmax(dim=1)  # (B, C)
        w = torch.ones(n_classes, device=logits.device) if self.weight is None else self.weight
        raw = _soft(target, n_classes, 0.0)  # (B, C)
        q = _soft(target, n_classes, self.label_smoothing)  # (B, C)
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

    def __init__(
        self, gamma: float = 2.0, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0
    ):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        logp = logits.float().log_softmax(dim=1)  # (B, C)
        focus = (1 - logp.exp()).clamp_min(0) ** self.gamma  # (B, C)
        per_class = -_soft(target, n_classes, self.label_smoothing) * focus * logp
        if self.alpha is not None:
            per_class = per_class * self.alpha
        return per_class.sum(dim=1).mean()


def _ce(cfg: CEConfig, counts: torch.Tensor) -> tuple[nn.Module, torch.Tensor | None]:
    return SoftCrossEntropy(label_smoothing=cfg.label_smoothing), None


def _weighted_ce(
    cfg: WeightedCEConfig, counts: torch.Tensor
) -> tuple[nn.Module, torch.Tensor | None]:
    weight = class_weights(counts, cfg.weights)
    return SoftCrossEntropy(weight, cfg.label_smoothing), weight


def _focal(cfg: FocalConfig, counts: torch.Tensor) -> tuple[nn.Module, torch.Tensor | None]:
    alpha = None if cfg.alpha is None else class_weights(counts, cfg.alpha)
    return FocalLoss(cfg.gamma, alpha, cfg.label_smoothing), alpha


# the ``loss`` param -> factory(config, class counts) -> (loss, class weights or None);
# configs: audioclf.config.losses.LOSS_CONFIGS, same names
LOSSES: dict[str, Callable] = {"ce": _ce, "weighted_ce": _weighted_ce, "focal": _focal}


def build_loss(name: str, cfg, class_counts: torch.Tensor) -> tuple[nn.Module, dict[str, float]]:
    """Build loss ``name`` from its validated config and the training split's class counts (C,).

    Returns:
        The loss module and, for losses with class weights, their range
        (``class_weight_min``, ``class_weight_max``) for the tracker; else ``{}``.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(sorted(LOSSES))}")
    loss, weight = LOSSES[name](cfg, class_counts)
    info = (
        {}
        if weight is None
        else {"class_weight_min": float(weight.min()), "class_weight_max": float(weight.max())}
    )
    return loss, info
