"""openSMILE's functionals as a front-end: eGeMAPS v02 (88) or ComParE 2016 (6373) values per segment.

The functionals (means, percentiles, slopes, ... of the low-level descriptors over the
segment) are what speech-emotion work puts a linear SVM on first. The ``opensmile``
package ships ``libSMILEapi`` and the feature sets' configs in its wheel, so nothing is
downloaded. A segment's trailing zeros (the padding of a clip shorter than the segment,
:func:`audioclf.features.audio.segment`) are left out before the functionals are taken:
silence would otherwise count in every mean and percentile. A file within one segment
thus gets the functionals of its own samples.

It comes with the optional extra ``opensmile`` (``pip install -e ".[opensmile]"``); without it
:class:`MissingExtraError` says so. openSMILE is licensed under audEERING's research
licence (no commercial use); training runs on its features are tagged with :data:`LICENCE`.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import nn

from audioclf.config.features import FUNCTIONALS, FeaturesConfig
from audioclf.errors import UserError

FEATURE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}  # kind -> openSMILE's set
LICENCE = "audEERING research licence (openSMILE): no commercial use"
INSTALL = 'pip install -e ".[opensmile]" (with uv: uv sync --extra opensmile)'


class MissingExtraError(UserError, ImportError):
    """The optional ``opensmile`` extra is not installed."""


def missing(kind: str = "compare") -> str | None:
    """Why the openSMILE front-end cannot run here, or None if it can (the extra is installed)."""
    if importlib.util.find_spec("opensmile") is None:
        return (
            f"features.kind={kind} needs openSMILE, which comes with the optional extra "
            f"'opensmile': {INSTALL}"
        )
    return None


def signal_end(wave: np.ndarray) -> int:
    """Samples up to and including the last non-zero one (the whole segment if it is all zeros).

    >>> signal_end(np.array([0.0, 0.5, -0.2, 0.0, 0.0]))
    3
    """
    nonzero = np.flatnonzero(wave)
    return int(nonzero[-1]) + 1 if len(nonzero) else len(wave)


class Functionals(nn.Module):
    """Segments to openSMILE functionals (``features.kind``: ``egemaps`` or ``compare``).

    Not thread-safe (one openSMILE process object): the features stage runs it from one
    thread, on batches.

    Input (B, N) float waveform in [-1, 1] at ``cfg.sample_rate``; output (B, D, 1) with
    D = 88 (eGeMAPS v02) or 6373 (ComParE 2016).
    """

    threadsafe = False

    def __init__(self, cfg: FeaturesConfig):
        super().__init__()
        if cfg.kind not in FEATURE_SETS:
            raise ValueError(f"Functionals reads kind {', '.join(FEATURE_SETS)}, got {cfg.kind!r}")
        reason = missing(cfg.kind)
        if reason:
            raise MissingExtraError(reason)
        import opensmile

        self.smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[cfg.kind]),
            feature_level=opensmile.FeatureLevel.Functionals,
        )
        self.sample_rate, self.dim = cfg.sample_rate, FUNCTIONALS[cfg.kind]
        if len(self.smile.feature_names) != self.dim:
            raise RuntimeError(
                f"openSMILE's {FEATURE_SETS[cfg.kind]} gives {len(self.smile.feature_names)} "
                f"functionals, not the {self.dim} audioclf expects; install the extra's version"
            )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.detach().cpu().numpy().astype(np.float32, copy=False)  # (B, N)
        rows = [
            self.smile.process_signal(w[: signal_end(w)], self.sample_rate).to_numpy()[0] for w in x
        ]  # B x (D,)
        out = torch.from_numpy(np.stack(rows).astype(np.float32))  # (B, D)
        return out.to(wave.device).unsqueeze(-1)  # (B, D, 1)
