"""Any Hub audio-classification checkpoint (``model: hf``), fine-tuned with a new head.

``AutoModelForAudioClassification`` builds the checkpoint's family (AST, wav2vec 2.0, HuBERT,
WavLM, data2vec-audio, Whisper's encoder, ...) with a classifier head for the dataset's
labels (``ignore_mismatched_sizes``: a checkpoint's own head of other labels is replaced),
and ``AutoFeatureExtractor`` its feature extractor, which runs inside :meth:`forward` on
the waveform the features stage stored at the extractor's rate: the checkpoint sees the
input it was trained on, as in Hugging Face's ``run_audio_classification.py``. Weights come
at a pinned revision (:mod:`audioclf.hub`); remote code is never run, so only
families that ``transformers`` itself holds load.
"""

from __future__ import annotations

import torch
from torch import nn

from audioclf.config.models import HFConfig
from audioclf.hub import PretrainedWeightsError, feature_extractor, load_pretrained

KEY = "model_params.hf.pretrained"
# the classifier head of every transformers audio-classification family: a projector (wav2vec 2.0,
# HuBERT, WavLM, data2vec, Whisper) and the classifier (AST's holds a layer norm and a dense layer)
HEAD = ("classifier.", "projector.")
FORWARDED = ("input_values", "input_features", "attention_mask")  # the extractor's model inputs


def _encoder_layers(net: nn.Module) -> nn.ModuleList:
    """The transformer's layer list (``encoder.layer``, ``encoder.layers``, ``layers``)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers"):
            return module
    raise PretrainedWeightsError(
        f"{KEY}: found no transformer layer list in {type(net).__name__} to freeze; set "
        "model_params.hf.freeze_layers=0"
    )


def _extractor_from_dict(config: dict):
    import transformers

    cls = getattr(transformers, config.get("feature_extractor_type", ""), None)
    if cls is None:
        raise ValueError(f"unknown feature extractor {config.get('feature_extractor_type')!r}")
    return cls.from_dict(config)


class HFAudioClassifier(nn.Module):
    """A ``transformers`` audio classifier on (B, 1, 1, N) waveforms; output (B, n_classes).

    Args:
        cfg: :class:`~audioclf.config.models.HFConfig`.
        n_classes: output logits.
        in_channels: must be 1.
        input_shape: (1, N) of the stored waveform segments.
        arch: ``{"config", "extractor"}`` saved by :meth:`arch` (via a checkpoint): rebuild
            that model and extractor without any download.
    """

    head_prefix = tuple(f"net.{h}" for h in HEAD)

    def __init__(
        self,
        cfg: HFConfig,
        n_classes: int,
        in_channels: int = 1,
        input_shape: tuple[int, int] | None = None,
        arch: dict | None = None,
    ):
        super().__init__()
        # imported here: transformers takes seconds to import, and every stage imports the registry
        from transformers import AutoConfig, AutoModelForAudioClassification

        if in_channels != 1 or (input_shape is not None and input_shape[0] != 1):
            raise ValueError(
                f"model=hf reads waveforms (1, 1, N) (features.kind: waveform), got "
                f"{in_channels} channels of shape {input_shape}"
            )
        if arch is not None:
            config = dict(arch["config"])
            self.net = AutoModelForAudioClassification.from_config(
                AutoConfig.for_model(config.pop("model_type"), **config)
            )
            self.extractor = _extractor_from_dict(arch["extractor"])
        else:
            self.net = load_pretrained(
                AutoModelForAudioClassification,
                cfg.pretrained,
                KEY,
                revision=cfg.revision,
                head_prefix=HEAD,
                num_labels=n_classes,
            )
            self.extractor = feature_extractor(self.net.pretrained_snapshot.folder, KEY)
            self._freeze(cfg)
        rate = getattr(self.extractor, "sampling_rate", None)
        if rate != cfg.sample_rate:
            raise PretrainedWeightsError(
                f"model_params.hf.sample_rate is {cfg.sample_rate}, but the feature extractor "
                f"of {cfg.pretrained!r} reads audio at {rate} Hz; set "
                f"model_params.hf.sample_rate={rate}"
            )
        self.sample_rate = rate

    def _freeze(self, cfg: HFConfig) -> None:
        if cfg.freeze_feature_encoder and hasattr(self.net, "freeze_feature_encoder"):
            self.net.freeze_feature_encoder()  # wav2vec 2.0 and its kin: the conv feature encoder
        if cfg.freeze_layers:
            layers = _encoder_layers(self.net)
            if cfg.freeze_layers > len(layers):
                raise PretrainedWeightsError(
                    f"model_params.hf.freeze_layers is {cfg.freeze_layers}, but {cfg.pretrained!r} "
                    f"has {len(layers)} layers"
                )
            base = self.net.base_model
            frozen = [
                getattr(base, n) for n in ("embeddings", "feature_projection") if hasattr(base, n)
            ]
            for module in [*frozen, *layers[: cfg.freeze_layers]]:
                module.requires_grad_(False)

    def arch(self) -> dict:
        """The model's config and its extractor's, as dicts: with the state dict, enough to
        rebuild this model offline."""
        return {"config": self.net.config.to_dict(), "extractor": self.extractor.to_dict()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wave = x[:, 0, 0].float().cpu().numpy()  # (B, N): the extractor works on arrays
        inputs = self.extractor(list(wave), sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(x.device) for k, v in inputs.items() if k in FORWARDED}
        return self.net(**inputs).logits  # (B, n_classes)
