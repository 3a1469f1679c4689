"""ImageNet CNNs from ``transformers`` (ResNet, EfficientNet) on the spectrogram as an image.

One wrapper, :class:`ImageNetCNN`; the family and its size come from the config
(:class:`ResNetParams` for ``resnet50``, :class:`EfficientNetParams` for
``efficientnet_b2``). A pretrained backbone sees the single log-mel channel
repeated to its three colour channels (summing the first conv's kernels over
colours would be equivalent); one trained from scratch takes one channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from audioclf.models.pretrained import load_pretrained
from audioclf.schema import check



def _check_pretrained(name: Optional[str], key: str) -> None:
    check(name is None or name.strip() != "", key,
           "must be null (train from scratch), a Hugging Face model id or a folder")


@dataclass(frozen=True)
class ResNetParams:
    """``model_params.resnet50``; the size fields apply when ``pretrained`` is null.

    Attributes:
        pretrained: Hub id (already in the HF cache) or folder; null trains from scratch.
        embedding_size: stem width.
        hidden_sizes: output width of each stage.
        depths: residual blocks per stage.
        layer_type: ``bottleneck`` (ResNet-50 and up) or ``basic`` (ResNet-18/34).
    """

    pretrained: Optional[str] = "microsoft/resnet-50"
    embedding_size: int = 64
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    layer_type: str = "bottleneck"

    hf_model = "ResNetForImageClassification"
    head_prefix = "classifier."
    key = "model_params.resnet50"

    def __post_init__(self):
        key = self.key
        _check_pretrained(self.pretrained, f"{key}.pretrained")
        check(self.embedding_size >= 1, f"{key}.embedding_size", f"must be >= 1, got {self.embedding_size}")
        check(len(self.hidden_sizes) == len(self.depths) >= 1 and min(self.hidden_sizes + self.depths) >= 1,
               f"{key}.depths", f"and hidden_sizes must be equally long lists of positive integers, got "
               f"{list(self.depths)} and {list(self.hidden_sizes)}")
        check(self.layer_type in ("basic", "bottleneck"), f"{key}.layer_type",
               f"is {self.layer_type!r}; allowed values: basic, bottleneck")

    def hf_config(self, n_classes: int, in_channels: int):
        from transformers import ResNetConfig

        return ResNetConfig(num_channels=in_channels, embedding_size=self.embedding_size,
                            hidden_sizes=list(self.hidden_sizes), depths=list(self.depths),
                            layer_type=self.layer_type, num_labels=n_classes)

    def overrides(self) -> dict:
        return {}

    def init_from_scratch(self, net: nn.Module) -> None:
        """transformers' ResNet init (Kaiming convs, unit batch norms) trains from scratch as it is."""


@dataclass(frozen=True)
class EfficientNetParams:
    """``model_params.efficientnet_b2``; ``width``/``depth_coefficient`` apply when ``pretrained`` is null.

    Attributes:
        pretrained: Hub id (already in the HF cache) or folder; null trains from scratch.
        width_coefficient: channel multiplier (B2: 1.1).
        depth_coefficient: block-repeat multiplier (B2: 1.2).
        dropout: before the classifier (also applied to a pretrained model).
        drop_connect_rate: stochastic depth (also applied to a pretrained model).
    """

    pretrained: Optional[str] = "google/efficientnet-b2"
    width_coefficient: float = 1.1
    depth_coefficient: float = 1.2
    dropout: float = 0.3
    drop_connect_rate: float = 0.2

    hf_model = "EfficientNetForImageClassification"
    head_prefix = "classifier."
    key = "model_params.efficientnet_b2"

    def __post_init__(self):
        key = self.key
        _check_pretrained(self.pretrained, f"{key}.pretrained")
        for name in ("width_coefficient", "depth_coefficient"):
            check(getattr(self, name) > 0, f"{key}.{name}", f"must be positive, got {getattr(self, name)}")
        for name in ("dropout", "drop_connect_rate"):
            check(0 <= getattr(self, name) < 1, f"{key}.{name}", f"must be in [0, 1), got {getattr(self, name)}")

    def hf_config(self, n_classes: int, in_channels: int):
        from transformers import EfficientNetConfig

        cfg = EfficientNetConfig(num_channels=in_channels, width_coefficient=self.width_coefficient,
                                 depth_coefficient=self.depth_coefficient, num_labels=n_classes,
                                 **self.overrides())
        # the top conv is round_filters(1280) wide; the config's hidden_dim must agree (B7's 2560 by default)
        from transformers.models.efficientnet.modeling_efficientnet import round_filters

        cfg.hidden_dim = round_filters(cfg, 1280)
        return cfg

    def overrides(self) -> dict:
        # transformers passes its Keras-style batch_norm_momentum (0.99) to torch, where it means
        # "running stats = 99 % the last batch": evaluation would use one batch's statistics.
        # 0.1 is torch's usual running-average rate.
        return {"dropout_rate": self.dropout, "drop_connect_rate": self.drop_connect_rate,
                "batch_norm_momentum": 0.1}

    def init_from_scratch(self, net: nn.Module) -> None:
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
                bound = 1 / m.out_features ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)


class ImageNetCNN(nn.Module):
    """A ``transformers`` image classifier on (B, 1, n_mels, T) log-mel; output (B, n_classes).

    Args:
        cfg: :class:`ResNetParams` or :class:`EfficientNetParams`.
        n_classes: output logits.
        in_channels: channels of the input (1 for log-mel).
        input_shape: unused (the networks pool globally); accepted for a uniform signature.
        arch: a saved HF config dict (from :meth:`arch` via a checkpoint): rebuild that
            architecture without loading pretrained weights.
    """

    head_prefix = "net.classifier."

    def __init__(self, cfg: ResNetParams | EfficientNetParams, n_classes: int, in_channels: int = 1,
                 input_shape: tuple[int, int] | None = None, arch: dict | None = None):
        super().__init__()
        import transformers  # here: transformers takes seconds to import, every stage imports the registry

        model_cls = getattr(transformers, cfg.hf_model)
        if arch is not None:
            self.net = model_cls(model_cls.config_class.from_dict(arch))
        elif cfg.pretrained is None:
            self.net = model_cls(cfg.hf_config(n_classes, in_channels))
            cfg.init_from_scratch(self.net)
        else:
            self.net = load_pretrained(model_cls, cfg.pretrained, f"{cfg.key}.pretrained",
                                       head_prefix=cfg.head_prefix, num_labels=n_classes, **cfg.overrides())
        self.colours = self.net.config.num_channels
        if self.colours != in_channels and in_channels != 1:
            raise ValueError(f"{cfg.hf_model} takes {self.colours} channels; cannot adapt {in_channels}")

    def arch(self) -> dict:
        """The HF config as a dict: with the state dict, enough to rebuild this model offline."""
        return self.net.config.to_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.colours:
            x = x.expand(-1, self.colours, -1, -1)              # (B, 3, n_mels, T), a view
        return self.net(pixel_values=x).logits                  # (B, n_classes)

