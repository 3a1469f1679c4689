"""A classifier head on a pretrained model's embeddings (``model: birdnet``, ``model: embedding``).

The pretrained network is the front-end (BirdNET v2.4's 1024-d embeddings, or a Hub audio
encoder's, computed once into the feature store: :mod:`audioclf.features.birdnet`,
:mod:`audioclf.features.encoder`); what trains is this head, linear (``hidden: 0``) or one
hidden layer wide.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from audioclf.config.models import EmbeddingHeadConfig


class EmbeddingHead(nn.Module):
    """Dropout -> linear (or linear -> ReLU -> dropout -> linear) on flattened embeddings.

    Input (B, C, F, T) embeddings (BirdNET: (B, 1, 1024, 1)); output (B, n_classes) logits.
    ``input_shape`` (F, T) and ``in_channels`` C size the first layer.
    """

    head_prefix = "head."

    def __init__(
        self,
        cfg: EmbeddingHeadConfig,
        n_classes: int,
        in_channels: int = 1,
        input_shape: tuple[int, int] | None = None,
    ):
        super().__init__()
        if input_shape is None:
            raise ValueError("EmbeddingHead needs input_shape=(dim, 1) of the embeddings")
        dim = in_channels * math.prod(input_shape)
        layers: list[nn.Module] = [nn.Dropout(cfg.dropout)]
        if cfg.hidden:
            layers += [nn.Linear(dim, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            dim = cfg.hidden
        self.head = nn.Sequential(*layers, nn.Linear(dim, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))  # (B, C*F*T) -> (B, n_classes)
