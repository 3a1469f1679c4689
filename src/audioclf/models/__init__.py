"""Model registry: the ``model`` param names a family and its config in ``model_params``."""
from __future__ import annotations

from typing import Any

from torch import nn

from audioclf.models.cnn import AudioCNN, CNNConfig

# name -> (model class, config class); variants of one family share a class
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "cnn": (AudioCNN, CNNConfig),
    "cnn_v2": (AudioCNN, CNNConfig),
}
MODEL_CONFIGS = {name: cfg for name, (_, cfg) in MODELS.items()}


def build_model(name: str, cfg: Any, n_classes: int, in_channels: int = 1) -> nn.Module:
    """Instantiate model ``name`` from its validated config."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    model_cls, _ = MODELS[name]
    return model_cls(cfg, n_classes=n_classes, in_channels=in_channels)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
