"""A Hugging Face audio encoder as a front-end (``features.kind: hf``): frozen embeddings.

Any checkpoint that ``transformers``' ``AutoModel`` builds without remote code (wav2vec 2.0,
HuBERT, WavLM, data2vec-audio, AST, Whisper's encoder, ...) is run once per segment by the
features stage, fed by the checkpoint's own ``AutoFeatureExtractor`` at its own sampling
rate; the hidden states of layer ``features.encoder_layer`` are averaged over time into one
vector per segment, stored in the feature store and read by the light heads (``embedding``,
``logreg``, ``svm``), as SUPERB's frozen-upstream protocol and bioacoustic transfer learning do. Nothing
of the encoder trains, so this runs on a CPU.

``features.encoder_layer: all`` stores every hidden state, each averaged over time: (L + 1, D)
per segment, for ``model: embedding`` to learn SUPERB's softmax-weighted sum of the layers
(:class:`audioclf.models.head.EmbeddingHead`). Averaging over time and weighting the layers are
both linear, so weighting the stored means is weighting the frames and then averaging: exact
for SUPERB's weighted sum without its optional layer norm (which is not linear).

Weights come as for the fine-tuned models (:func:`audioclf.hub.fetch`): at a
pinned revision, downloaded once into the Hugging Face cache, safetensors first, checked
against the hashes the Hub published; offline, a missing revision fails with the command that
fetches it. :func:`resolve` fills in what the encoder's files fix (its sampling rate, hidden
size, the commit a branch stood at and its weights' sha256), so the store key names the exact
weights and a trained model reloads them by commit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from audioclf.config.features import ALL_LAYERS, FeaturesConfig
from audioclf.hub import (
    PretrainedWeightsError,
    Snapshot,
    feature_extractor,
    fetch,
    load_pretrained,
)

KEY = "features.encoder"
FORWARDED = ("input_values", "input_features", "attention_mask")  # the extractor's model inputs
NOTHING_NEW = ()  # no weight of an encoder may be newly initialised (no head prefix)


def snapshot(cfg: FeaturesConfig) -> Snapshot:
    """The encoder's files on this machine (downloaded at ``encoder_revision`` if need be)."""
    return fetch(cfg.encoder, cfg.encoder_revision, KEY)


def _config(folder: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)


def depth(config: Any) -> int:
    """The encoder's transformer layers (``num_hidden_layers``; ``encoder_layers`` for Whisper),
    0 where its config names none."""
    return getattr(config, "num_hidden_layers", None) or getattr(config, "encoder_layers", 0)


def hidden_size(config: Any) -> int:
    """The width of the encoder's hidden states (``hidden_size``; ``d_model`` for Whisper)."""
    size = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not size:
        raise PretrainedWeightsError(
            f"{KEY}: the config of a {config.model_type!r} model names no hidden_size or d_model"
        )
    return int(size)


def resolve(cfg: FeaturesConfig) -> tuple[FeaturesConfig, dict[str, list]]:
    """``cfg`` with what the encoder's files fix: the extractor's sampling rate, the hidden size,
    the number of layers, the commit ``encoder_revision`` stands at and the weights' sha256.

    Returns:
        The config and ``{key: [params' value, the encoder's]}`` of the values replaced.

    Raises:
        PretrainedWeightsError: the encoder is not available (with the command that fetches it),
            has no audio feature extractor, or ``encoder_layer`` is not one of its layers.
    """
    snap = snapshot(cfg)
    config = _config(snap.folder)
    extractor = feature_extractor(snap.folder, KEY)
    layers = depth(config)
    if cfg.encoder_layer == ALL_LAYERS and not layers:
        raise PretrainedWeightsError(
            f"features.encoder_layer is {ALL_LAYERS}, but the config of {cfg.encoder!r} names no "
            "number of layers (num_hidden_layers or encoder_layers): choose one layer (0: the "
            "input to the first layer, -1: the last layer's output)"
        )
    if cfg.encoder_layer != ALL_LAYERS and not -layers - 1 <= cfg.encoder_layer <= layers:
        raise PretrainedWeightsError(
            f"features.encoder_layer is {cfg.encoder_layer}, but {cfg.encoder!r} has {layers} "
            f"layers: choose one in [{-layers - 1}, {layers}] (0: the input to the first layer, "
            f"-1: the last layer's output) or {ALL_LAYERS}"
        )
    fixed = {
        "sample_rate": int(extractor.sampling_rate),
        "encoder_revision": snap.commit or cfg.encoder_revision,
        "encoder_dim": hidden_size(config),
        "encoder_depth": layers or None,
        "encoder_sha256": snap.sha256,
    }
    changed = {k: [getattr(cfg, k), v] for k, v in fixed.items() if getattr(cfg, k) != v}
    return dataclasses.replace(cfg, **fixed), changed


class EncoderEmbedding(nn.Module):
    """Segments (B, N) at the extractor's rate to the mean-pooled hidden states: of one layer
    (B, D, 1), or of every layer (B, L + 1, D, 1) with ``encoder_layer: all``.

    Called from one thread, on batches (the encoder uses torch's own threads). Inference only:
    no gradient, dropout off.
    """

    threadsafe = False

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        from transformers import AutoModel

        net = load_pretrained(
            AutoModel, cfg.encoder, KEY, revision=cfg.encoder_revision, head_prefix=NOTHING_NEW
        )
        snap = net.pretrained_snapshot
        if cfg.encoder_sha256 is not None and snap.sha256 != cfg.encoder_sha256:
            raise PretrainedWeightsError(
                f"{KEY}: {cfg.encoder!r} at {cfg.encoder_revision} has weights of sha256 "
                f"{snap.sha256}, not the {cfg.encoder_sha256} these features were made with"
            )
        # an encoder-decoder (Whisper) runs its encoder only
        self.net = net.get_encoder() if net.config.is_encoder_decoder else net
        self.net.eval().requires_grad_(False)
        self.extractor = feature_extractor(snap.folder, KEY)
        self.rate, self.layer = int(self.extractor.sampling_rate), cfg.encoder_layer
        self.states = cfg.shape[0]  # hidden states stored per segment
        if self.rate != cfg.sample_rate:
            raise PretrainedWeightsError(
                f"features.sample_rate is {cfg.sample_rate}, but the feature extractor of "
                f"{cfg.encoder!r} reads audio at {self.rate} Hz (the features stage sets it)"
            )

    @torch.inference_mode()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        segments = list(wave.detach().float().cpu().numpy())  # the extractor works on arrays
        inputs = self.extractor(segments, sampling_rate=self.rate, return_tensors="pt")
        device = next(self.net.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items() if k in FORWARDED}
        states = self.net(**inputs, output_hidden_states=True).hidden_states  # L + 1 of (B, T, D)
        if self.layer != ALL_LAYERS:
            return states[self.layer].mean(dim=1).float().to(wave.device).unsqueeze(-1)  # (B, D, 1)
        if len(states) != self.states:
            raise PretrainedWeightsError(
                f"{KEY}: the encoder gave {len(states)} hidden states, not the {self.states} "
                "(its layers and their input) its config names"
            )
        pooled = torch.stack([h.mean(dim=1) for h in states], dim=1)  # (B, L + 1, D)
        return pooled.float().to(wave.device).unsqueeze(-1)  # (B, L + 1, D, 1)
