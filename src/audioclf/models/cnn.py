"""AudioCNN: a convolutional classifier over log-mel spectrograms.

One class, sized by :class:`CNNConfig`: the default ``cnn`` (4 blocks, ~343K
parameters) and ``cnn_v2`` (5 blocks, ~4.2M) differ only in their configs, and so
do the attention variants ``cnn_se`` and ``cnn_cbam`` (``attention: se | cbam``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audioclf.models.attention import ATTENTION
from audioclf.schema import check

ATTENTION_CHOICES = ("none", *ATTENTION)


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of :class:`AudioCNN`.

    Attributes:
        channels: output channels of each conv block; one 2x2 max-pool follows each.
        stem_stride: stride of the first block's 5x5 conv; 2 quarters the compute of
            every later block at the cost of input resolution.
        hidden: width of the hidden layer of the classifier head.
        dropout: dropout before the output layer.
        attention: ``none``, ``se`` (squeeze-and-excitation) or ``cbam`` after each conv block.
        reduction: channel reduction of the attention MLP.
    """

    channels: tuple[int, ...] = (32, 64, 128, 192)
    stem_stride: int = 2
    hidden: int = 64
    dropout: float = 0.3
    attention: str = "none"
    reduction: int = 8

    def __post_init__(self):

        check(len(self.channels) >= 1 and all(c > 0 for c in self.channels), "model_params.*.channels",
              f"must be a non-empty list of positive widths, got {list(self.channels)}")
        check(self.stem_stride in (1, 2), "model_params.*.stem_stride", f"must be 1 or 2, got {self.stem_stride}")
        check(self.hidden > 0, "model_params.*.hidden", f"must be positive, got {self.hidden}")
        check(0 <= self.dropout < 1, "model_params.*.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.attention in ATTENTION_CHOICES, "model_params.*.attention",
              f"is {self.attention!r}; allowed values: {', '.join(ATTENTION_CHOICES)}")
        check(self.reduction >= 1, "model_params.*.reduction", f"must be >= 1, got {self.reduction}")


class AudioCNN(nn.Module):
    """Conv blocks (each optionally followed by SE or CBAM attention) -> global mean+max pooling -> MLP head.

    Input (B, 1, n_mels, T) log-mel; output (B, n_classes) logits. Any n_mels and T
    large enough to survive the pooling are accepted (``input_shape`` is not needed).
    """

    head_prefix = "head."

    def __init__(self, cfg: CNNConfig, n_classes: int, in_channels: int = 1,
                 input_shape: tuple[int, int] | None = None):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.cfg = cfg
        blocks = []
        prev = in_channels
        for i, width in enumerate(cfg.channels):
            kernel, stride = (5, cfg.stem_stride) if i == 0 else (3, 1)
            blocks += [nn.Conv2d(prev, width, kernel, stride=stride, padding=kernel // 2, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if cfg.attention != "none":
                blocks.append(ATTENTION[cfg.attention](width, cfg.reduction))
            blocks.append(nn.MaxPool2d(2, ceil_mode=True))
            prev = width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Linear(2 * prev, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)                                  # (B, C, F', T')
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        return self.head(pooled)                              # (B, n_classes)
