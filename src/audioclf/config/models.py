"""Typed params of the models: ``model_params.<model>``, one config dataclass per family.

The ``model`` param names an entry of :data:`MODEL_CONFIGS`; its builder is the entry
of the same name in :data:`audioclf.models.MODELS` (for the scikit-learn heads ``logreg`` and
``svm``, configured in :mod:`audioclf.config.heads`: :mod:`audioclf.models.classical`). Variants of one family share a
config class (``cnn``, ``cnn_v2``, ``cnn_se`` and ``cnn_cbam`` differ only in their values
in params.yaml). The configs are plain validated dataclasses, so params validate
without importing torch or transformers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

from audioclf.config.heads import HEAD_CONFIGS
from audioclf.config.schema import at_most, check, choice, parameters_at_most

ATTENTION = ("none", "se", "cbam")  # after each conv block of AudioCNN (audioclf.models.attention)
AST_CHECKPOINT = "MIT/ast-finetuned-audioset-10-10-0.4593"
# the commits params.yaml pins (the Hub ids' revisions the default runs used); see docs/models.md
AST_REVISION = "f826b80d28226b62986cc218e5cec390b1096902"
RESNET_REVISION = "34c2154c194f829b11125337b98c8f5f9965ff19"
EFFICIENTNET_REVISION = "main"
LAYER_TYPES = ("basic", "bottleneck")
MAX_WIDTH = 8192  # channels of one layer (ResNet-50's widest stage: 2048)
MAX_DEPTH = 256  # layers or blocks of one stack


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
        check(
            len(self.channels) >= 1 and all(c > 0 for c in self.channels),
            "model_params.*.channels",
            f"must be a non-empty list of positive widths, got {list(self.channels)}",
        )
        check(
            self.stem_stride in (1, 2),
            "model_params.*.stem_stride",
            f"must be 1 or 2, got {self.stem_stride}",
        )
        check(self.hidden > 0, "model_params.*.hidden", f"must be positive, got {self.hidden}")
        check(
            0 <= self.dropout < 1,
            "model_params.*.dropout",
            f"must be in [0, 1), got {self.dropout}",
        )
        choice(self.attention, ATTENTION, "model_params.*.attention")
        check(
            self.reduction >= 1, "model_params.*.reduction", f"must be >= 1, got {self.reduction}"
        )
        for i, width in enumerate(self.channels):
            at_most(width, MAX_WIDTH, f"model_params.*.channels[{i}]", "channels of one block")
        at_most(len(self.channels), MAX_DEPTH, "model_params.*.channels", "blocks")
        at_most(self.hidden, 65536, "model_params.*.hidden", "units of the head")
        parameters_at_most(self.parameters, "model_params.*.channels")

    @property
    def parameters(self) -> int:
        """About how many parameters the network has (its convolutions and head)."""
        pairs = enumerate(itertools.pairwise((1, *self.channels)))
        convs = sum(a * b * (25 if i == 0 else 9) for i, (a, b) in pairs)  # 5x5 stem, then 3x3
        return convs + 2 * self.channels[-1] * self.hidden


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of :class:`SpecViT`.

    Attributes:
        patch_size: side of the square patches, in mel bins and frames.
        dim: token width.
        depth: transformer layers.
        heads: attention heads (must divide ``dim``).
        mlp_ratio: width of each layer's MLP / ``dim``.
        dropout: dropout in the layers and on the tokens.
    """

    patch_size: int = 16
    dim: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: float = 4.0
    dropout: float = 0.1

    def __post_init__(self):
        for name in ("patch_size", "dim", "depth", "heads"):
            value = getattr(self, name)
            check(value >= 1, f"model_params.vit.{name}", f"must be >= 1, got {value}")
        check(
            self.dim % self.heads == 0,
            "model_params.vit.heads",
            f"must divide model_params.vit.dim={self.dim}, got {self.heads}",
        )
        check(
            self.mlp_ratio > 0,
            "model_params.vit.mlp_ratio",
            f"must be positive, got {self.mlp_ratio}",
        )
        at_most(self.dim, MAX_WIDTH, "model_params.vit.dim", "token width")
        at_most(self.depth, MAX_DEPTH, "model_params.vit.depth", "layers")
        at_most(self.patch_size, 256, "model_params.vit.patch_size", "bins on a side")
        at_most(self.mlp_ratio, 64.0, "model_params.vit.mlp_ratio", "MLP width / dim")
        parameters_at_most(self.parameters, "model_params.vit.dim")
        check(
            0 <= self.dropout < 1,
            "model_params.vit.dropout",
            f"must be in [0, 1), got {self.dropout}",
        )

    @property
    def parameters(self) -> int:
        """About how many parameters the layers (attention and MLP) and the patch embedding hold."""
        per_layer = (4 + 2 * self.mlp_ratio) * self.dim**2
        return int(self.depth * per_layer + self.patch_size**2 * self.dim)


@dataclass(frozen=True)
class ASTConfig:
    """``model_params.ast``. With ``pretrained`` set, the size fields are ignored (the checkpoint's config rules).

    Attributes:
        pretrained: Hub id or folder; null trains from scratch.
        revision: commit hash (or tag, branch) of a Hub id, downloaded once into the HF cache.
        hidden_size, num_layers, num_heads, intermediate_size: transformer size (from scratch).
        patch_size, frequency_stride, time_stride: patching (overlapping when stride < patch).
        dropout: hidden dropout (also applied to a pretrained model).
    """

    pretrained: str | None = AST_CHECKPOINT
    revision: str = AST_REVISION
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16
    frequency_stride: int = 10
    time_stride: int = 10
    dropout: float = 0.0

    def __post_init__(self):
        for name in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "patch_size",
            "frequency_stride",
            "time_stride",
        ):
            value = getattr(self, name)
            check(value >= 1, f"model_params.ast.{name}", f"must be >= 1, got {value}")
        key = "model_params.ast"
        at_most(self.hidden_size, MAX_WIDTH, f"{key}.hidden_size", "token width")
        at_most(self.num_layers, MAX_DEPTH, f"{key}.num_layers", "layers")
        at_most(self.intermediate_size, 8 * MAX_WIDTH, f"{key}.intermediate_size", "MLP width")
        for name in ("patch_size", "frequency_stride", "time_stride"):
            at_most(getattr(self, name), 256, f"{key}.{name}", "bins")
        parameters_at_most(self.parameters, f"{key}.hidden_size")
        check(
            self.hidden_size % self.num_heads == 0,
            "model_params.ast.num_heads",
            f"must divide model_params.ast.hidden_size={self.hidden_size}, got {self.num_heads}",
        )
        check(
            0 <= self.dropout < 1,
            "model_params.ast.dropout",
            f"must be in [0, 1), got {self.dropout}",
        )
        check(
            self.pretrained is None or self.pretrained.strip() != "",
            "model_params.ast.pretrained",
            "must be null (train from scratch), a Hugging Face model id or a folder",
        )
        _check_revision(self.revision, "model_params.ast.revision")

    @property
    def parameters(self) -> int:
        """About how many parameters the size keys give (attention and MLP of every layer)."""
        h = self.hidden_size
        return self.num_layers * (4 * h * h + 2 * h * self.intermediate_size)


def _check_pretrained(name: str | None, key: str) -> None:
    check(
        name is None or name.strip() != "",
        key,
        "must be null (train from scratch), a Hugging Face model id or a folder",
    )


def _check_revision(revision: str, key: str) -> None:
    check(
        isinstance(revision, str) and revision.strip() != "" and " " not in revision,
        key,
        f"must be a commit hash, tag or branch of the Hub id in pretrained, got {revision!r}",
    )


@dataclass(frozen=True)
class ResNetConfig:
    """``model_params.resnet50``; the size fields apply when ``pretrained`` is null.

    Attributes:
        pretrained: Hub id or folder; null trains from scratch.
        revision: commit hash (or tag, branch) of a Hub id, downloaded once into the HF cache.
        embedding_size: stem width.
        hidden_sizes: output width of each stage.
        depths: residual blocks per stage.
        layer_type: ``bottleneck`` (ResNet-50 and up) or ``basic`` (ResNet-18/34).
    """

    pretrained: str | None = "microsoft/resnet-50"
    revision: str = RESNET_REVISION
    embedding_size: int = 64
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    layer_type: str = "bottleneck"

    key = "model_params.resnet50"  # for messages (a class attribute, not a param)

    def __post_init__(self):
        key = self.key
        _check_pretrained(self.pretrained, f"{key}.pretrained")
        _check_revision(self.revision, f"{key}.revision")
        check(
            self.embedding_size >= 1,
            f"{key}.embedding_size",
            f"must be >= 1, got {self.embedding_size}",
        )
        check(
            len(self.hidden_sizes) == len(self.depths) >= 1
            and min(self.hidden_sizes + self.depths) >= 1,
            f"{key}.depths",
            f"and hidden_sizes must be equally long lists of positive integers, got "
            f"{list(self.depths)} and {list(self.hidden_sizes)}",
        )
        choice(self.layer_type, LAYER_TYPES, f"{key}.layer_type")
        at_most(self.embedding_size, MAX_WIDTH, f"{key}.embedding_size", "stem width")
        for i, (width, depth) in enumerate(zip(self.hidden_sizes, self.depths, strict=True)):
            at_most(width, MAX_WIDTH, f"{key}.hidden_sizes[{i}]", "stage width")
            at_most(depth, MAX_DEPTH, f"{key}.depths[{i}]", "blocks per stage")
        parameters_at_most(self.parameters, f"{key}.hidden_sizes")

    @property
    def parameters(self) -> int:
        """At most how many parameters the size keys give: a basic block holds two 3x3
        convolutions of the stage's width, a bottleneck less."""
        return sum(d * 18 * w * w for w, d in zip(self.hidden_sizes, self.depths, strict=True))


@dataclass(frozen=True)
class EfficientNetConfig:
    """``model_params.efficientnet_b2``; ``width``/``depth_coefficient`` apply when ``pretrained`` is null.

    Attributes:
        pretrained: Hub id or folder; null trains from scratch.
        revision: commit hash (or tag, branch) of a Hub id, downloaded once into the HF cache.
        width_coefficient: channel multiplier (B2: 1.1).
        depth_coefficient: block-repeat multiplier (B2: 1.2).
        dropout: before the classifier (also applied to a pretrained model).
        drop_connect_rate: stochastic depth (also applied to a pretrained model).
    """

    pretrained: str | None = "google/efficientnet-b2"
    revision: str = EFFICIENTNET_REVISION
    width_coefficient: float = 1.1
    depth_coefficient: float = 1.2
    dropout: float = 0.3
    drop_connect_rate: float = 0.2

    key = "model_params.efficientnet_b2"  # for messages (a class attribute, not a param)

    def __post_init__(self):
        key = self.key
        _check_pretrained(self.pretrained, f"{key}.pretrained")
        _check_revision(self.revision, f"{key}.revision")
        for name in ("width_coefficient", "depth_coefficient"):
            check(
                getattr(self, name) > 0,
                f"{key}.{name}",
                f"must be positive, got {getattr(self, name)}",
            )
        for name in ("width_coefficient", "depth_coefficient"):
            at_most(getattr(self, name), 8.0, f"{key}.{name}", "B7 scales by 2.0 and 3.1")
        for name in ("dropout", "drop_connect_rate"):
            check(
                0 <= getattr(self, name) < 1,
                f"{key}.{name}",
                f"must be in [0, 1), got {getattr(self, name)}",
            )


@dataclass(frozen=True)
class EmbeddingHeadConfig:
    """``model_params.birdnet``: a classifier head on a pretrained model's embeddings.

    Attributes:
        hidden: width of one hidden layer (ReLU); 0 is a linear head.
        dropout: dropout on the head's input (and after the hidden layer).
    """

    hidden: int = 0
    dropout: float = 0.0
    key: ClassVar[str] = "model_params.birdnet"

    def __post_init__(self):
        check(
            self.hidden >= 0,
            f"{self.key}.hidden",
            f"must be >= 0 (0 = linear), got {self.hidden}",
        )
        at_most(self.hidden, 65536, f"{self.key}.hidden", "units of the head")
        check(
            0 <= self.dropout < 1,
            f"{self.key}.dropout",
            f"must be in [0, 1), got {self.dropout}",
        )


@dataclass(frozen=True)
class EncoderHeadConfig(EmbeddingHeadConfig):
    """``model_params.embedding``: the same head on any vector front-end, e.g. a Hub encoder's
    frozen embeddings (``features.kind: hf``); on every layer of the encoder
    (``features.encoder_layer: all``) it first learns their softmax-weighted sum."""

    key: ClassVar[str] = "model_params.embedding"


@dataclass(frozen=True)
class HFConfig:
    """``model_params.hf``: any Hub audio-classification checkpoint, fine-tuned with a new head.

    Built with ``AutoModelForAudioClassification`` and fed by the checkpoint's own
    ``AutoFeatureExtractor`` (the features stage stores the waveform at ``sample_rate``).

    Attributes:
        pretrained: Hub id or folder of the checkpoint (AST, wav2vec 2.0, HuBERT, WavLM,
            data2vec-audio, Whisper's encoder, ...).
        revision: commit hash (or tag, branch) of a Hub id, downloaded once into the HF cache.
        sample_rate: the feature extractor's sampling rate (checked against it when built).
        freeze_feature_encoder: freeze a speech model's convolutional feature encoder
            (wav2vec 2.0 and its kin), as Hugging Face's audio-classification example does.
        freeze_layers: freeze the embeddings and the first N transformer layers.
    """

    pretrained: str = AST_CHECKPOINT
    revision: str = AST_REVISION
    sample_rate: int = 16000
    freeze_feature_encoder: bool = True
    freeze_layers: int = 0

    def __post_init__(self):
        check(
            isinstance(self.pretrained, str) and self.pretrained.strip() != "",
            "model_params.hf.pretrained",
            "must be a Hugging Face model id or a folder (model=hf has no from-scratch form)",
        )
        _check_revision(self.revision, "model_params.hf.revision")
        check(
            self.sample_rate > 0,
            "model_params.hf.sample_rate",
            f"must be positive, got {self.sample_rate}",
        )
        check(
            self.freeze_layers >= 0,
            "model_params.hf.freeze_layers",
            f"must be >= 0 (0 = none frozen), got {self.freeze_layers}",
        )


# the ``model`` param -> its config class (builders: audioclf.models.MODELS, same names)
MODEL_CONFIGS: dict[str, type] = {
    "cnn": CNNConfig,
    "cnn_v2": CNNConfig,
    "cnn_se": CNNConfig,
    "cnn_cbam": CNNConfig,
    "vit": ViTConfig,
    "ast": ASTConfig,
    "resnet50": ResNetConfig,
    "efficientnet_b2": EfficientNetConfig,
    "birdnet": EmbeddingHeadConfig,
    "embedding": EncoderHeadConfig,
    "hf": HFConfig,
    **HEAD_CONFIGS,  # logreg, svm: scikit-learn heads (audioclf.models.classical), not torch modules
}
