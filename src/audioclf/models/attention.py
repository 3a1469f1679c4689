"""Attention blocks for conv feature maps: squeeze-and-excitation and CBAM.

Both map (B, C, F, T) to the same shape, rescaling the input; they are inserted
after each conv block of :class:`audioclf.models.cnn.AudioCNN` (``attention: se | cbam``).
"""

from __future__ import annotations

import torch
from torch import nn


def _bottleneck(channels: int, reduction: int) -> int:
    return max(1, channels // reduction)


class SqueezeExcite(nn.Module):
    """Channel gates from globally pooled features (Hu et al. 2018).

    Args:
        channels: C of the input (B, C, F, T).
        reduction: C / width of the gating MLP.
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = _bottleneck(channels, reduction)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(x.mean(dim=(2, 3)))  # (B, C)
        return x * w[:, :, None, None]


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): channel gates, then a spatial gate.

    The channel gate shares one MLP between mean- and max-pooled features; the
    spatial gate is a 7x7 conv over the channel-wise mean and max maps.

    Args:
        channels: C of the input (B, C, F, T).
        reduction: C / width of the channel MLP.
    """

    def __init__(self, channels: int, reduction: int, kernel_size: int = 7):
        super().__init__()
        hidden = _bottleneck(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(
            self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        )  # (B, C)
        x = x * channel[:, :, None, None]
        maps = torch.cat(
            [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1
        )  # (B, 2, F, T)
        return x * torch.sigmoid(self.spatial(maps))  # (B, 1, F, T) gate broadcast over C


ATTENTION = {"se": SqueezeExcite, "cbam": CBAM}
