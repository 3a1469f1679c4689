"""Which front-end a model reads, and what ``auto`` stands for.

* ``features.kind: auto`` is the front-end the model family was pretrained on
  (:data:`MODEL_FRONTENDS`: ``ast`` -> ``fbank``, ``resnet50`` and ``efficientnet_b2`` ->
  ``imagenet``, ``birdnet`` -> ``birdnet``; the scikit-learn heads ``logreg`` and ``svm`` ->
  ``compare``, openSMILE's ComParE 2016 functionals), whether or not its weights are loaded;
  every other model reads ``logmel``. It is resolved when params are loaded (:func:`for_model`),
  so every stage sees the concrete kind. A front-end that does not fit the model fails
  there, naming both: a vector (:data:`~audioclf.config.features.VECTOR_KINDS`) for a network
  that reads spectrograms, a spectrogram for a head that reads vectors, or another
  front-end than a pretrained model's own.
* A pretrained front-end fixes its own values (:data:`FIXED`), whatever params say: AST's
  Kaldi filterbanks are 16 kHz, 25-ms windows, 10-ms shift, 128 bins; BirdNET reads 3-s
  windows at 48 kHz.
* ``features.encoder_layer: all`` (every hidden state of a Hub encoder, ``kind: hf``) is for
  ``model: embedding`` only, which learns their weighted sum; ``logreg`` and ``svm`` take one layer.
* ``sample_rate``, ``n_fft``, ``hop_length``, ``n_mels`` and ``segment_seconds`` may be
  ``auto``: :func:`resolve_auto` chooses them from the data's profile
  (:func:`audioclf.data.profile.data_profile`) by the rules of :data:`AUTO_RULES`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from audioclf.config.features import ALL_LAYERS, AUTO, VECTOR_KINDS, FeaturesConfig
from audioclf.config.schema import ParamsError, check

# model -> the front-end its family was pretrained on (every other model: logmel)
MODEL_FRONTENDS = {
    "ast": "fbank",
    "resnet50": "imagenet",
    "efficientnet_b2": "imagenet",
    "birdnet": "birdnet",
    "logreg": "compare",
    "svm": "compare",
    "hf": "waveform",  # the checkpoint's own feature extractor runs in the model
    "embedding": "hf",  # a head on a Hub encoder's frozen embeddings (features.encoder)
}
VECTOR_MODELS = ("birdnet", "embedding", "logreg", "svm")  # heads that read one vector per segment
DESCRIBED = {
    "fbank": "Kaldi filterbanks, 16 kHz, 25-ms window, 10-ms shift, 128 bins (AST's AudioSet input)",
    "imagenet": "the log-mel as an image in [0, 1] with ImageNet's mean and std",
    "birdnet": "BirdNET v2.4's 1024-d embeddings of 3-s windows at 48 kHz",
    "logmel": "log-mel spectrograms",
    "mfcc": "MFCC with delta and delta-delta",
    "egemaps": "openSMILE's 88 eGeMAPS v02 functionals",
    "compare": "openSMILE's 6373 ComParE 2016 functionals",
    "waveform": "the waveform at the checkpoint's sampling rate, for its own feature extractor",
    "hf": "a Hub audio encoder's hidden states of one layer, or of all (features.encoder), mean-pooled",
}
# what a pretrained front-end fixes, whatever params say
FIXED: dict[str, dict[str, Any]] = {
    "fbank": {
        "sample_rate": 16000,
        "n_fft": 400,  # the 25-ms window (Kaldi pads it to a 512-point FFT)
        "hop_length": 160,  # the 10-ms shift
        "n_mels": 128,
        "f_min": 20.0,  # Kaldi's low_freq; the top is the Nyquist frequency
        "f_max": None,
        "highpass_order": 0,
    },
    "birdnet": {"sample_rate": 48000, "segment_seconds": 3.0},
}
# augmentations realised on dB log-mel power (training.augment): wrong on other scales
POWER_DOMAIN = ("gain", "noise", "background", "reverb")
SPECTRAL = ("pitch_shift", "time_stretch", "specaugment")  # meaningless on embeddings
NOT_DB = ("fbank", "imagenet", "waveform", *VECTOR_KINDS)

AUTO_MAX_RATE = 22050  # auto never resamples above this (the octave above doubles the cost)
AUTO_WINDOW_S = 0.1  # n_fft: the largest power of two within 100 ms (2048 at 22.05 kHz)
SEGMENT_STEP_S = 0.5
SEGMENT_RANGE_S = (0.5, 10.0)
AUTO_RULES = {
    "sample_rate": f"the median file's sample rate, at most {AUTO_MAX_RATE} Hz",
    "n_fft": f"the largest power of two within {AUTO_WINDOW_S * 1000:g} ms at that rate",
    "hop_length": "n_fft / 4",
    "n_mels": "n_fft / 8, at most 128",
    "segment_seconds": (
        f"the 90th percentile of the file durations rounded up to {SEGMENT_STEP_S:g} s, "
        f"within [{SEGMENT_RANGE_S[0]:g}, {SEGMENT_RANGE_S[1]:g}] s"
    ),
}


def for_model(cfg: FeaturesConfig, model: str, model_config: Any) -> FeaturesConfig:
    """``cfg`` with its kind resolved for ``model`` and a pretrained front-end's fixed values set.

    Raises:
        ParamsError: the kind does not fit the model (embeddings for a spectrogram model, a
            spectrogram for ``birdnet``, or another front-end than a pretrained model's own).
    """
    kind = MODEL_FRONTENDS.get(model, "logmel") if cfg.kind == AUTO else cfg.kind
    check_pair(kind, model, model_config, encoder_layer=cfg.encoder_layer)
    fixed = FIXED.get(kind, {})
    if kind == "waveform":  # at the rate of the checkpoint's feature extractor
        fixed = {"sample_rate": model_config.sample_rate}
    return dataclasses.replace(cfg, kind=kind, **fixed)


def check_pair(kind: str, model: str, model_config: Any, *, encoder_layer: int | str = -1) -> None:
    """Refuse a front-end ``kind`` that ``model`` cannot read (see :func:`for_model`), and an
    ``hf`` front-end of every layer (``encoder_layer: all``) under another model than ``embedding``.
    """
    wanted = MODEL_FRONTENDS.get(model, "logmel")
    pretrained = getattr(model_config, "pretrained", None)
    vector_models = "model=" + " | ".join(VECTOR_MODELS)
    check(
        kind not in VECTOR_KINDS or model in VECTOR_MODELS,
        "features.kind",
        f"is {kind!r} ({DESCRIBED[kind]}: one vector per segment), which model={model} cannot "
        f"read (it reads a spectrogram); only {vector_models} read vectors; set "
        f"features.kind=auto or choose one of those models",
    )
    check(
        kind != "waveform" or model == "hf",
        "features.kind",
        f"is 'waveform' ({DESCRIBED['waveform']}), which only model=hf reads; set "
        "features.kind=auto",
    )
    check(
        model != "birdnet" or kind == "birdnet",
        "features.kind",
        f"is {kind!r}, but model=birdnet reads {DESCRIBED['birdnet']}; set features.kind=auto "
        "(model=logreg or model=svm read openSMILE's functionals)",
    )
    check(
        model not in VECTOR_MODELS or kind in VECTOR_KINDS,
        "features.kind",
        f"is {kind!r} ({DESCRIBED.get(kind, kind)}), but model={model} reads one vector per "
        f"segment ({', '.join(VECTOR_KINDS)}); set features.kind=auto (for {model}: {wanted})",
    )
    check(
        not pretrained or kind == wanted,
        "features.kind",
        f"is {kind!r}, which does not fit model={model} with pretrained weights "
        f"(model_params.{model}.pretrained={pretrained!r}): they were trained on {wanted} "
        f"({DESCRIBED[wanted]}); set features.kind=auto (or {wanted}), or "
        f"model_params.{model}.pretrained=null to train from scratch",
    )
    check(
        kind != "hf" or encoder_layer != ALL_LAYERS or model == "embedding",
        "features.encoder_layer",
        f"is {ALL_LAYERS} (every layer's hidden states), whose weighted sum is learned by "
        f"model=embedding only; model={model} takes one layer: set features.encoder_layer=<int> "
        "(0 = the input to the first layer, -1 = the last layer's output)",
    )


def check_augment(kind: str, augment: Any, norm: str = "global") -> None:
    """Refuse augmentations that assume dB log-mel on a front-end of another scale, or on
    features normalised per group (``train.norm: group``: no one mean maps a batch back to dB).

    Raises:
        ParamsError: naming the first such augmentation.
    """
    bad = list(POWER_DOMAIN) if kind in NOT_DB or norm == "group" else []
    bad += list(SPECTRAL) if kind in (*VECTOR_KINDS, "waveform") else []
    for name in bad:
        p = getattr(augment, name).p
        why = (
            f"features.kind={kind} gives {DESCRIBED[kind]}"
            if kind in NOT_DB
            else "train.norm=group normalises each group by its own statistics"
        )
        check(
            p == 0,
            f"augment.{name}.p",
            f"is {p}, but augment.{name} acts on dB log-mel and {why}; set it to 0 "
            "(augment.mixup works on every front-end)",
        )


def overridden(requested: FeaturesConfig, resolved: FeaturesConfig) -> dict[str, list]:
    """Keys whose concrete params value the resolved front-end replaced: ``{key: [params, used]}``."""
    out = {}
    for f in dataclasses.fields(FeaturesConfig):
        before, after = getattr(requested, f.name), getattr(resolved, f.name)
        if before != AUTO and before != after:
            out[f.name] = [before, after]
    return out


def resolve_auto(cfg: FeaturesConfig, profile: dict) -> tuple[FeaturesConfig, dict[str, Any]]:
    """``cfg`` with every ``auto`` value chosen from the data's ``profile`` (:data:`AUTO_RULES`).

    Returns:
        The resolved config and ``{key: value}`` of what ``auto`` became.

    Raises:
        ParamsError: an ``auto`` value but no file to choose from, or a resolved config
            that fails validation (e.g. an explicit ``f_max`` above the chosen Nyquist).
    """
    chosen: dict[str, Any] = {}
    if all(getattr(cfg, f) != AUTO for f in AUTO_RULES):
        return cfg, chosen
    if not profile.get("files"):
        raise ParamsError("params: 'features' has auto values but the manifest has no files")
    rate = cfg.sample_rate
    if rate == AUTO:
        rate = chosen["sample_rate"] = min(int(profile["sample_rate"]["median"]), AUTO_MAX_RATE)
    n_fft = cfg.n_fft
    if n_fft == AUTO:
        n_fft = chosen["n_fft"] = 2 ** int(math.floor(math.log2(AUTO_WINDOW_S * rate)))
    if cfg.hop_length == AUTO:
        chosen["hop_length"] = max(1, n_fft // 4)
    if cfg.n_mels == AUTO:
        chosen["n_mels"] = max(1, min(128, n_fft // 8))
    if cfg.segment_seconds == AUTO:
        p90 = float(profile["duration_s"]["p90"])
        steps = math.ceil(p90 / SEGMENT_STEP_S - 1e-6)  # 4.0 s clips give 4.0, not 4.5
        lo, hi = SEGMENT_RANGE_S
        chosen["segment_seconds"] = min(hi, max(lo, steps * SEGMENT_STEP_S))
    return dataclasses.replace(cfg, **chosen), chosen
