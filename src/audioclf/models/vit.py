"""SpecViT: a small Vision Transformer over non-overlapping spectrogram patches.

Trained from scratch; its size (patch, width, depth, heads) comes from
:class:`ViTConfig`. For a pretrained transformer use ``ast``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from audioclf.config.models import ViTConfig


class SpecViT(nn.Module):
    """Patch embedding -> [CLS] + learned positions -> pre-norm transformer -> linear head.

    The input is zero-padded (after normalisation, zero is the training mean) up to
    a whole number of patches. Positions are learned for the patch grid of
    ``input_shape``; inputs must have that shape.

    Args:
        cfg: the architecture.
        n_classes: output logits.
        in_channels: input channels (1 for log-mel).
        input_shape: (n_mels, n_frames) of the inputs.

    Input (B, in_channels, n_mels, T); output (B, n_classes).
    """

    head_prefix = "head."

    def __init__(
        self,
        cfg: ViTConfig,
        n_classes: int,
        in_channels: int = 1,
        input_shape: tuple[int, int] | None = None,
    ):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if input_shape is None:
            raise ValueError(
                "SpecViT needs input_shape=(n_mels, n_frames) to size its position embeddings"
            )
        self.cfg, self.input_shape = cfg, tuple(input_shape)
        self.grid = tuple(math.ceil(s / cfg.patch_size) for s in self.input_shape)  # (F', T')
        self.patch = nn.Conv2d(in_channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], cfg.dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.dim,
            cfg.heads,
            int(cfg.dim * cfg.mlp_ratio),
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"SpecViT was built for inputs of (n_mels, frames) {self.input_shape}, "
                f"got {tuple(x.shape[2:])}"
            )
        p = self.cfg.patch_size
        pad_f, pad_t = self.grid[0] * p - x.shape[2], self.grid[1] * p - x.shape[3]
        x = nn.functional.pad(x, (0, pad_t, 0, pad_f))  # (B, C, F'p, T'p)
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # (B, F'T', dim)
        cls = self.cls_token.expand(
            x.shape[0], -1, -1
        )  # (B, 1, dim); shape[0], not len(): an export keeps B dynamic
        h = self.drop(torch.cat([cls, tokens], dim=1) + self.pos)  # (B, 1 + F'T', dim)
        h = self.encoder(h)
        return self.head(h[:, 0])  # (B, n_classes)
