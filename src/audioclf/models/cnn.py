"""AudioCNN: a convolutional classifier over log-mel spectrograms.

One class, sized by :class:`CNNConfig`: the default ``cnn`` (4 blocks, ~343K
parameters) and ``cnn_v2`` (5 blocks, ~4.2M) differ only in their configs, and so
do the attention variants ``cnn_se`` and ``cnn_cbam`` (``attention: se | cbam``).
"""

from __future__ import annotations

import torch
from torch import nn

from audioclf.config.models import CNNConfig
from audioclf.models.attention import ATTENTION


class AudioCNN(nn.Module):
    """Conv blocks (each optionally followed by SE or CBAM attention) -> global mean+max pooling -> MLP head.

    Input (B, 1, n_mels, T) log-mel; output (B, n_classes) logits. Any n_mels and T
    large enough to survive the pooling are accepted (``input_shape`` is not needed).
    """

    head_prefix = "head."

    def __init__(
        self,
        cfg: CNNConfig,
        n_classes: int,
        in_channels: int = 1,
        input_shape: tuple[int, int] | None = None,
    ):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.cfg = cfg
        blocks = []
        prev = in_channels
        for i, width in enumerate(cfg.channels):
            kernel, stride = (5, cfg.stem_stride) if i == 0 else (3, 1)
            blocks += [
                nn.Conv2d(prev, width, kernel, stride=stride, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if cfg.attention != "none":
                blocks.append(ATTENTION[cfg.attention](width, cfg.reduction))
            blocks.append(nn.MaxPool2d(2, ceil_mode=True))
            prev = width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Linear(2 * prev, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, C, F', T')
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        return self.head(pooled)  # (B, n_classes)
