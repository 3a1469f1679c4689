"""ImageNet CNNs from ``transformers`` (ResNet, EfficientNet) on the spectrogram as an image.

One wrapper, :class:`ImageNetCNN`; the family and its size come from the config
(:class:`~audioclf.config.models.ResNetConfig` for ``resnet50``,
:class:`~audioclf.config.models.EfficientNetConfig` for ``efficientnet_b2``), and what
each family needs from ``transformers`` from :data:`FAMILIES`. A pretrained backbone
sees the single log-mel channel repeated to its three colour channels (summing the
first conv's kernels over colours would be equivalent); one trained from scratch
takes one channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from audioclf.config.models import EfficientNetConfig, ResNetConfig
from audioclf.hub import load_pretrained


def _resnet_config(cfg: ResNetConfig, n_classes: int, in_channels: int):
    from transformers import ResNetConfig as HFResNetConfig

    return HFResNetConfig(
        num_channels=in_channels,
        embedding_size=cfg.embedding_size,
        hidden_sizes=list(cfg.hidden_sizes),
        depths=list(cfg.depths),
        layer_type=cfg.layer_type,
        num_labels=n_classes,
    )


def _efficientnet_overrides(cfg: EfficientNetConfig) -> dict:
    # transformers passes its Keras-style batch_norm_momentum (0.99) to torch, where it means
    # "running stats = 99 % the last batch": evaluation would use one batch's statistics.
    # 0.1 is torch's usual running-average rate.
    return {
        "dropout_rate": cfg.dropout,
        "drop_connect_rate": cfg.drop_connect_rate,
        "batch_norm_momentum": 0.1,
    }


def _efficientnet_config(cfg: EfficientNetConfig, n_classes: int, in_channels: int):
    from transformers import EfficientNetConfig as HFEfficientNetConfig
    from transformers.models.efficientnet.modeling_efficientnet import round_filters

    hf = HFEfficientNetConfig(
        num_channels=in_channels,
        width_coefficient=cfg.width_coefficient,
        depth_coefficient=cfg.depth_coefficient,
        num_labels=n_classes,
        **_efficientnet_overrides(cfg),
    )
    # the top conv is round_filters(1280) wide; the config's hidden_dim must agree (B7's 2560 by default)
    hf.hidden_dim = round_filters(hf, 1280)
    return hf


def _torchvision_init(net: nn.Module) -> None:
    """torchvision's EfficientNet init: transformers' (N(0, 0.02) for convs *and* batch-norm
    scales) is meant to be overwritten by weights, and from scratch its signal dies out
    within a few blocks (a tiny config stayed at chance)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1 / m.out_features**0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class Family:
    """What :class:`ImageNetCNN` needs of one ``transformers`` family."""

    hf_model: str  # the transformers class
    hf_config: Callable  # (cfg, n_classes, in_channels) -> its config, from scratch
    overrides: Callable[..., dict] = (
        lambda cfg: {}
    )  # config values also applied to pretrained weights
    init_from_scratch: Callable[[nn.Module], None] = lambda net: None  # transformers' init is kept
    head_prefix: str = "classifier."


FAMILIES: dict[type, Family] = {
    ResNetConfig: Family("ResNetForImageClassification", _resnet_config),
    EfficientNetConfig: Family(
        "EfficientNetForImageClassification",
        _efficientnet_config,
        _efficientnet_overrides,
        _torchvision_init,
    ),
}


class ImageNetCNN(nn.Module):
    """A ``transformers`` image classifier on (B, 1, n_mels, T) log-mel; output (B, n_classes).

    Args:
        cfg: a :class:`ResNetConfig` or :class:`EfficientNetConfig`.
        n_classes: output logits.
        in_channels: channels of the input (1 for log-mel).
        input_shape: unused (the networks pool globally); accepted for a uniform signature.
        arch: a saved HF config dict (from :meth:`arch` via a checkpoint): rebuild that
            architecture without loading pretrained weights.
    """

    head_prefix = "net.classifier."

    def __init__(
        self,
        cfg: ResNetConfig | EfficientNetConfig,
        n_classes: int,
        in_channels: int = 1,
        input_shape: tuple[int, int] | None = None,
        arch: dict | None = None,
    ):
        super().__init__()
        import transformers  # here: transformers takes seconds to import, every stage imports the registry

        family = FAMILIES[type(cfg)]
        model_cls = getattr(transformers, family.hf_model)
        if arch is not None:
            self.net = model_cls(model_cls.config_class.from_dict(arch))
        elif cfg.pretrained is None:
            self.net = model_cls(family.hf_config(cfg, n_classes, in_channels))
            family.init_from_scratch(self.net)
        else:
            self.net = load_pretrained(
                model_cls,
                cfg.pretrained,
                f"{cfg.key}.pretrained",
                revision=cfg.revision,
                head_prefix=family.head_prefix,
                num_labels=n_classes,
                **family.overrides(cfg),
            )
        self.colours = self.net.config.num_channels
        if self.colours != in_channels and in_channels != 1:
            raise ValueError(
                f"{family.hf_model} takes {self.colours} channels; cannot adapt {in_channels}"
            )

    def arch(self) -> dict:
        """The HF config as a dict: with the state dict, enough to rebuild this model offline."""
        return self.net.config.to_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.colours:
            x = x.expand(-1, self.colours, -1, -1)  # (B, 3, n_mels, T), a view
        return self.net(pixel_values=x).logits  # (B, n_classes)
