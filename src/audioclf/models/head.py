"""A classifier head on a pretrained model's embeddings (``model: birdnet``, ``model: embedding``).

The pretrained network is the front-end (BirdNET v2.4's 1024-d embeddings, or a Hub audio
encoder's, computed once into the feature store: :mod:`audioclf.features.birdnet`,
:mod:`audioclf.features.encoder`); what trains is this head, linear (``hidden: 0``) or one
hidden layer wide. On every layer of an encoder (``features.encoder_layer: all``) it first
learns how much each layer counts: SUPERB's softmax-weighted sum of the hidden states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from audioclf.config.models import EmbeddingHeadConfig

LAYER_LOGITS = "layer_logits"  # the parameter (and state_dict key) of the layers' weights


class EmbeddingHead(nn.Module):
    """Dropout -> linear (or linear -> ReLU -> dropout -> linear) on flattened embeddings.

    Input (B, C, F, T) embeddings (BirdNET: (B, 1, 1024, 1)); output (B, n_classes) logits.
    ``input_shape`` (F, T) sizes the first layer. One channel is read as it is. C > 1 channels
    are the hidden states of an encoder's every layer (``features.encoder_layer: all``:
    (B, L + 1, D, 1)), first summed with the weights ``softmax(layer_logits)`` as SUPERB does:
    ``layer_logits`` (C,) start at zero (each layer weighs 1 / C) and train with the head. With
    one channel there is no such parameter, and the head is a plain linear or MLP one.
    """

    head_prefix = ("head.", LAYER_LOGITS)  # the weights of the layers train at the head's rate

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
        if in_channels < 1:
            raise ValueError(f"EmbeddingHead needs in_channels >= 1, got {in_channels}")
        stacked = in_channels > 1
        self.register_parameter(
            LAYER_LOGITS, nn.Parameter(torch.zeros(in_channels)) if stacked else None
        )
        dim = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Dropout(cfg.dropout)]
        if cfg.hidden:
            layers += [nn.Linear(dim, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            dim = cfg.hidden
        self.head = nn.Sequential(*layers, nn.Linear(dim, n_classes))

    def layer_weights(self) -> torch.Tensor | None:
        """The weight of each layer in the sum (C,), summing to 1; None with one channel."""
        return None if self.layer_logits is None else self.layer_logits.softmax(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.layer_weights()
        if weights is not None:
            x = (weights[:, None, None] * x).sum(dim=1)  # (B, C, F, T) -> (B, F, T)
        return self.head(x.flatten(1))  # (B, F*T) -> (B, n_classes)


def layer_weights(state_dict: Mapping[str, torch.Tensor]) -> list[float] | None:
    """The learned weight of each layer in a checkpoint's ``state_dict`` of an
    :class:`EmbeddingHead` on every layer of an encoder (index 0: the input to the first layer);
    None for any other model.

    >>> layer_weights({LAYER_LOGITS: torch.zeros(4)})
    [0.25, 0.25, 0.25, 0.25]
    """
    logits = state_dict.get(LAYER_LOGITS)
    return None if logits is None else logits.float().softmax(dim=0).tolist()
