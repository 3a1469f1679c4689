"""Does the front-end fit the data? The features stage's choice of ``auto`` values and its warnings.

:func:`fit_frontend` resolves the ``auto`` values from the data's profile
(:func:`audioclf.config.frontends.resolve_auto`), then measures the front-end against the
profile (:func:`frontend_fit`): the share of mel bands above the median file's Nyquist
frequency (they hold no signal, only what resampling leaves), the share of each
segment that is padding (or repetition) because clips are shorter, the share of audio
dropped as a trailing remainder shorter than a segment, and a band top (``f_max``, or
the Nyquist frequency of the resampled audio) above the files' own Nyquist frequency.
Each finding past its threshold is logged as a warning naming the fix, and everything
goes into ``reports/features.json`` under ``frontend``.
"""

from __future__ import annotations

import logging

import librosa
import numpy as np

from audioclf.config.features import FUNCTIONALS, VECTOR_KINDS, FeaturesConfig
from audioclf.config.frontends import AUTO_RULES, DESCRIBED, FIXED, overridden, resolve_auto
from audioclf.data.manifest import Entry
from audioclf.data.profile import data_profile
from audioclf.features import encoder

log = logging.getLogger(__name__)
BANDS_WARN = 0.05  # share of the bands above the files' Nyquist frequency
PADDING_WARN = 0.5  # share of the segments' samples that is filler (more than half of each)
DROPPED_WARN = 0.25  # share of the audio never in a segment
TOP_TOLERANCE = 1.01  # a band top this close to the files' Nyquist frequency is not flagged


def band_centres(cfg: FeaturesConfig) -> np.ndarray | None:
    """Centre frequencies (Hz) of the front-end's mel bands; None for the vector front-ends (BirdNET's
    bands are internal; openSMILE's are its configs')."""
    if cfg.kind in VECTOR_KINDS:
        return None
    top = cfg.sample_rate / 2 if cfg.f_max is None else cfg.f_max
    htk = cfg.kind == "fbank"  # Kaldi's mel scale is HTK's (1127 ln(1 + f / 700))
    return librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.f_min, fmax=top, htk=htk)[1:-1]


def segment_shares(cfg: FeaturesConfig, durations: np.ndarray) -> tuple[float, float, float]:
    """(padding share of the segments, dropped share of the audio, share of files shorter than a
    segment), from the files' durations (s) and the segmentation of :func:`audioclf.features.audio.segment`."""
    length = cfg.segment_samples / cfg.sample_rate
    hop = cfg.hop_samples / cfg.sample_rate
    d = np.minimum(durations, cfg.max_file_seconds)
    short = d < length
    n = np.where(short, 1, 1 + np.floor((d - length) / hop + 1e-9))
    covered = np.where(short, d, length + (n - 1) * hop)  # audio under some segment
    padding = float(np.where(short, length - d, 0.0).sum() / (n * length).sum())
    dropped = float(np.clip(d - covered, 0, None).sum() / max(d.sum(), 1e-12))
    return padding, dropped, float(short.mean())


def frontend_fit(cfg: FeaturesConfig, profile: dict, entries: list[Entry]) -> dict:
    """How ``cfg`` fits the data: the measures above and the warnings they raise (empty if none)."""
    if not entries:
        return {"warnings": []}
    rate = int(profile["sample_rate"]["median"])
    nyquist, top = rate / 2, cfg.sample_rate / 2 if cfg.f_max is None else cfg.f_max
    centres = band_centres(cfg)
    above = None if centres is None else float((centres > nyquist).mean())
    padding, dropped, short = segment_shares(cfg, np.array([e.duration for e in entries]))
    fixed = (
        f" (fixed by features.kind={cfg.kind}: {DESCRIBED[cfg.kind]})" if cfg.kind in FIXED else ""
    )
    warnings = []
    if above is not None and above > BANDS_WARN:
        warnings.append(
            f"{above:.0%} of the {len(centres)} bands lie above the median file's Nyquist frequency "
            f"({nyquist:g} Hz at {rate} Hz): they hold no signal; set features.sample_rate=auto or "
            f"{rate}, or features.f_max={nyquist:g}{fixed}"
        )
    if top > nyquist * TOP_TOLERANCE:
        warnings.append(
            f"the front-end's band top ({top:g} Hz) is above the median file's Nyquist frequency "
            f"({nyquist:g} Hz): nothing was recorded there{fixed}"
        )
    seconds = cfg.segment_samples / cfg.sample_rate
    median = profile["duration_s"]["p50"]
    if padding > PADDING_WARN and cfg.kind not in FUNCTIONALS:  # openSMILE leaves padding out
        warnings.append(
            f"{padding:.0%} of the segments' samples are {cfg.short_clips} filler ({short:.0%} of the "
            f"files are shorter than the {seconds:g}-s segment; median file {median:g} s): set "
            f"features.segment_seconds=auto or about {median:g}{fixed}"
        )
    if dropped > DROPPED_WARN:
        warnings.append(
            f"{dropped:.0%} of the audio is in no segment (a remainder shorter than the {seconds:g}-s "
            f"segment is dropped; median file {median:g} s): set features.segment_seconds=auto or "
            f"features.segment_hop_seconds smaller{fixed}"
        )
    return {
        "median_sample_rate": rate,
        "nyquist_hz": nyquist,
        "band_top_hz": top,
        "bands_above_nyquist": None if above is None else round(above, 4),
        "padding_share": round(padding, 4),
        "dropped_share": round(dropped, 4),
        "files_shorter_than_segment": round(short, 4),
        "warnings": warnings,
    }


def fit_frontend(
    requested: FeaturesConfig, cfg: FeaturesConfig, entries: list[Entry], model: str
) -> tuple[FeaturesConfig, dict]:
    """The front-end to compute for ``entries``, and what the report says of it.

    Args:
        requested: ``features`` as params give it (``auto`` values unresolved).
        cfg: the same resolved for the model (:func:`audioclf.config.frontends.for_model`).
        entries: the manifest.
        model: the ``model`` param (for the report).

    Returns:
        The resolved config, and ``{"kind", "model", "requested_kind", "auto", "rules",
        "fixed", "fit"}``: what ``auto`` became and by which rule, which params a
        pretrained front-end replaced, and :func:`frontend_fit`'s measures and warnings.
    """
    profile = data_profile(entries)
    fixed = overridden(requested, cfg)
    if cfg.kind == "hf":  # the encoder's files fix its rate and size (downloaded here if need be)
        cfg, by_encoder = encoder.resolve(cfg)
        fixed.update(by_encoder)
    resolved, chosen = resolve_auto(cfg, profile)
    fit = frontend_fit(resolved, profile, entries)
    if requested.kind != resolved.kind:
        log.info("features: kind %s -> %s (model %s)", requested.kind, resolved.kind, model)
    for key, value in chosen.items():
        log.info("features: %s auto -> %s (%s)", key, value, AUTO_RULES[key])
    for key, (before, after) in fixed.items():
        log.info("features: %s %s -> %s (fixed by %s)", key, before, after, resolved.kind)
    for warning in fit["warnings"]:
        log.warning("features: the front-end does not fit the data: %s", warning)
    summary = {
        "kind": resolved.kind,
        "model": model,
        "requested_kind": requested.kind,
        "auto": chosen,
        "rules": {k: AUTO_RULES[k] for k in chosen},
        "fixed": fixed,
        "fit": fit,
    }
    return resolved, summary
