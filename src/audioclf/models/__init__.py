"""Models: the registry (the ``model`` param names a family, configured in ``model_params.<model>``),
one family per module, checkpoints (:mod:`audioclf.models.checkpoint`) and inference on
feature batches (:mod:`audioclf.models.inference`). May import config, features and io.

Every model maps (B, C, F, T) features (log-mel, filterbanks, an image, an embedding: the
front-end its family reads, :data:`audioclf.config.frontends.MODEL_FRONTENDS`) to
(B, n_classes) logits and has a
``head_prefix``: the parameters under it form the classifier head (trained at
``train.lr``; the rest, the backbone, at ``train.lr * train.backbone_lr_mult``).
Models built from pretrained weights also have ``arch()``: the resolved
architecture a checkpoint stores to rebuild them offline.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from audioclf.models.ast import ASTClassifier
from audioclf.models.cnn import AudioCNN
from audioclf.models.head import EmbeddingHead
from audioclf.models.hf import HFAudioClassifier
from audioclf.models.imagenet import ImageNetCNN
from audioclf.models.vit import SpecViT

# the ``model`` param -> its model class (configs: audioclf.config.models.MODEL_CONFIGS, same names);
# variants of one family share a class
MODELS: dict[str, type[nn.Module]] = {
    "cnn": AudioCNN,
    "cnn_v2": AudioCNN,
    "cnn_se": AudioCNN,
    "cnn_cbam": AudioCNN,
    "vit": SpecViT,
    "ast": ASTClassifier,
    "resnet50": ImageNetCNN,
    "efficientnet_b2": ImageNetCNN,
    "birdnet": EmbeddingHead,
    "embedding": EmbeddingHead,
    "hf": HFAudioClassifier,
}


def build_model(
    name: str,
    cfg: Any,
    n_classes: int,
    in_channels: int = 1,
    input_shape: tuple[int, int] | None = None,
    arch: dict | None = None,
) -> nn.Module:
    """Instantiate model ``name`` from its validated config.

    Args:
        name: a key of :data:`MODELS`.
        cfg: its config (``params.model_params[name]``).
        n_classes: output logits.
        in_channels: input channels (1 for log-mel).
        input_shape: (n_mels, n_frames) of the inputs; the transformers need it.
        arch: the ``arch()`` a checkpoint stored: rebuild that architecture, no pretrained weights loaded.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    model_cls = MODELS[name]
    extra = {"arch": arch} if arch is not None else {}
    return model_cls(
        cfg,
        n_classes=n_classes,
        in_channels=in_channels,
        input_shape=None if input_shape is None else tuple(input_shape),
        **extra,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def head_and_backbone(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters of the classifier head and of the rest (the backbone)."""
    head, backbone = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.startswith(model.head_prefix) else backbone).append(p)
    if not head:
        raise ValueError(
            f"{type(model).__name__} has no parameters under its head_prefix {model.head_prefix!r}"
        )
    return head, backbone
