"""Audio Spectrogram Transformer (Gong et al. 2021) from ``transformers``.

Pretrained (``pretrained:`` a Hub id at ``revision``, downloaded once, or a folder; see
:mod:`audioclf.hub`) or from scratch (``pretrained: null``, sized by
:class:`~audioclf.config.models.ASTConfig`). The AudioSet checkpoint was trained on 1024 frames of 128 mel
bins; short clips are *not* padded to 1024 frames: ``max_length`` is set to the
cached features' frame count and the pretrained patch-grid position embeddings are
interpolated (2-D, bilinear) to the new grid, keeping the [CLS] and distillation
tokens' embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from audioclf.config.models import ASTConfig
from audioclf.hub import PretrainedWeightsError, load_pretrained

AST_MEL_BINS = 128  # what the AudioSet checkpoint's patch grid and weights expect


def patch_grid(
    n_mels: int, n_frames: int, patch: int, f_stride: int, t_stride: int
) -> tuple[int, int]:
    """Patches along frequency and time, as ``ASTEmbeddings`` computes them."""
    return (n_mels - patch) // f_stride + 1, (n_frames - patch) // t_stride + 1


def interpolate_position_embeddings(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], n_special: int = 2
) -> torch.Tensor:
    """Resize AST position embeddings to a new patch grid.

    Args:
        pos: (1, n_special + F*T, D) embeddings, the patch part in row-major (F, T) order.
        old_grid: (F, T) of ``pos``.
        new_grid: (F', T') wanted.
        n_special: leading token embeddings kept as they are ([CLS], distillation).

    Returns:
        (1, n_special + F'*T', D).
    """
    special, grid = pos[:, :n_special], pos[:, n_special:]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(
            f"position embeddings hold {grid.shape[1]} patches, not the {old_grid} grid"
        )
    d = pos.shape[-1]
    grid = grid.reshape(1, *old_grid, d).permute(0, 3, 1, 2)  # (1, D, F, T)
    grid = nn.functional.interpolate(grid, size=new_grid, mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d)  # (1, F'T', D)
    return torch.cat([special, grid], dim=1)


class ASTClassifier(nn.Module):
    """``ASTForAudioClassification`` on (B, 1, n_mels, T) log-mel; output (B, n_classes).

    Args:
        cfg: :class:`~audioclf.config.models.ASTConfig`.
        n_classes: output logits.
        in_channels: must be 1.
        input_shape: (n_mels, n_frames) of the inputs.
        arch: a saved transformers ``ASTConfig`` dict (from :meth:`arch` via a checkpoint): rebuild
            that architecture without loading pretrained weights.
    """

    head_prefix = "net.classifier."

    def __init__(
        self,
        cfg: ASTConfig,
        n_classes: int,
        in_channels: int = 1,
        input_shape: tuple[int, int] | None = None,
        arch: dict | None = None,
    ):
        super().__init__()
        # imported here: transformers takes seconds to import, and every stage imports the registry
        from transformers import ASTConfig as HFASTConfig
        from transformers import ASTForAudioClassification

        if in_channels != 1:
            raise ValueError(f"AST takes one input channel, got in_channels={in_channels}")
        if input_shape is None:
            raise ValueError("ASTClassifier needs input_shape=(n_mels, n_frames)")
        n_mels, n_frames = input_shape
        if arch is not None:
            self.net = ASTForAudioClassification(HFASTConfig.from_dict(arch))
        elif cfg.pretrained is None:
            self.net = ASTForAudioClassification(
                HFASTConfig(
                    hidden_size=cfg.hidden_size,
                    num_hidden_layers=cfg.num_layers,
                    num_attention_heads=cfg.num_heads,
                    intermediate_size=cfg.intermediate_size,
                    patch_size=cfg.patch_size,
                    frequency_stride=cfg.frequency_stride,
                    time_stride=cfg.time_stride,
                    max_length=n_frames,
                    num_mel_bins=n_mels,
                    hidden_dropout_prob=cfg.dropout,
                    num_labels=n_classes,
                )
            )
        else:
            self.net = self._pretrained(cfg, ASTForAudioClassification, n_classes, n_mels, n_frames)
        if self.net.config.num_labels != n_classes:
            raise ValueError(
                f"AST architecture has {self.net.config.num_labels} outputs, expected {n_classes}"
            )

    @staticmethod
    def _pretrained(
        cfg: ASTConfig, model_cls: Any, n_classes: int, n_mels: int, n_frames: int
    ) -> nn.Module:
        key = "model_params.ast.pretrained"
        net = load_pretrained(
            model_cls,
            cfg.pretrained,
            key,
            revision=cfg.revision,
            head_prefix="classifier.dense.",
            num_labels=n_classes,
            hidden_dropout_prob=cfg.dropout,
        )
        c = net.config
        if n_mels != c.num_mel_bins:
            raise PretrainedWeightsError(
                f"{key}: {cfg.pretrained!r} expects {c.num_mel_bins} mel bins, the features have {n_mels}; "
                f"set features.n_mels={c.num_mel_bins} (AST's AudioSet weights use {AST_MEL_BINS}) or "
                f"{key}=null to train from scratch"
            )
        if n_frames < c.patch_size:
            raise ValueError(
                f"AST needs at least {c.patch_size} frames per segment, the features have {n_frames}"
            )
        embeddings = net.audio_spectrogram_transformer.embeddings
        old = patch_grid(
            c.num_mel_bins, c.max_length, c.patch_size, c.frequency_stride, c.time_stride
        )
        new = patch_grid(n_mels, n_frames, c.patch_size, c.frequency_stride, c.time_stride)
        with torch.no_grad():
            pos = interpolate_position_embeddings(embeddings.position_embeddings.data, old, new)
        embeddings.position_embeddings = nn.Parameter(pos)
        c.max_length = n_frames  # the saved arch() then rebuilds the resized model
        return net

    def arch(self) -> dict:
        """The transformers ``ASTConfig`` as a dict: with the state dict, enough to rebuild this model offline."""
        return self.net.config.to_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # AST wants (B, time, mel); both orders keep mel bin 0 = lowest frequency
        return self.net(input_values=x[:, 0].transpose(1, 2)).logits  # (B, n_classes)
