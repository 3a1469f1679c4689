"""On-the-fly augmentation of training batches of cached log-mel features.

Training reads the log-mel cache, not waveforms, so the waveform augmentations are
realised as their spectrogram-domain equivalents on the (dB) log-mel, with
``P = 10 ** (dB / 10)`` the mel power:

* gain: a dB offset (the cache is absolute dB, ``ref=1``);
* noise: white noise's power added in the power domain at a random SNR (white
  noise has a flat expected mel spectrum under the Slaney-normalised filterbank;
  each bin's power is drawn exponentially, as one FFT bin's would be);
* background: another training clip of the batch, its power scaled to a random SNR
  and added (the label is unchanged);
* pitch shift: a shift along the mel axis by whole bins (the mel scale is close to
  logarithmic above ~1 kHz, where a constant shift is a constant pitch ratio);
* time stretch: linear interpolation along time at a random rate, then a random
  crop (slower) or padding with the clip's floor (faster) back to T frames;
* reverb: an exponentially decaying tail (``exp(-k / tau)`` over frames ``k >= 1``)
  smeared along time in the power domain, at a random wet/dry energy ratio.

Then, on the normalised features: MixUp (per batch; soft labels) and SpecAugment
(zeroed -- i.e. training-mean -- frequency and time stripes). Each augmentation
applies to each clip with its probability ``p``; all draw from the training
``torch.Generator`` (on the CPU), so a seeded run is reproducible and resumable.
Nothing is written to disk, and validation and test data are never augmented.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from audioclf.config.training import AugmentConfig

_AMIN = 1e-10  # the cache's floor on mel power before the log


def _uniform(lo: float, hi: float, n: int, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _chosen(p: float, n: int, g: torch.Generator) -> torch.Tensor:
    """Which of ``n`` clips an augmentation of probability ``p`` applies to: bool (n,)."""
    return torch.rand(n, generator=g) < p


def _power(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, db / 10)


def _db(power: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(power.clamp_min(_AMIN))


def _mean_power(power: torch.Tensor) -> torch.Tensor:
    return power.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)


def pitch_shift(db: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each clip of (B, C, F, T) by ``shifts`` (B,) mel bins (up if positive).

    Vacated bins get the clip's floor (its lowest value).
    """
    f = db.shape[2]
    src = torch.arange(f, device=db.device)[None, :] - shifts.to(db.device)[:, None]  # (B, F)
    valid = (src >= 0) & (src < f)
    idx = src.clamp(0, f - 1)[:, None, :, None].expand_as(db)
    floor = db.amin(dim=(1, 2, 3), keepdim=True).expand_as(db)
    return torch.where(valid[:, None, :, None], db.gather(2, idx), floor)


def time_stretch(db: torch.Tensor, rates: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Resample time of (B, C, F, T) at ``rates`` (B,) (> 1 is faster), starting ``offsets`` (B,) output frames in.

    Output frame t reads input position ``(t + offset) * rate`` (linear interpolation);
    positions past the end read the clip's floor.
    """
    t = db.shape[3]
    rates, offsets = rates.to(db.device), offsets.to(db.device)
    pos = (torch.arange(t, device=db.device)[None, :] + offsets[:, None]) * rates[:, None]  # (B, T)
    i0 = pos.floor().long()
    w = (pos - i0)[:, None, None, :]  # (B, 1, 1, T)
    gather = lambda i: db.gather(3, i.clamp(0, t - 1)[:, None, None, :].expand_as(db))  # noqa: E731
    out = gather(i0) * (1 - w) + gather(i0 + 1) * w
    floor = db.amin(dim=(1, 2, 3), keepdim=True)
    return torch.where((pos <= t - 1)[:, None, None, :], out, floor)


def reverb(power: torch.Tensor, decay: torch.Tensor, wet: torch.Tensor) -> torch.Tensor:
    """Add an exponential tail to mel power (B, C, F, T): ``decay`` (B,) in frames, ``wet`` (B,) tail/dry energy.

    The tail is cut where it has decayed by ~52 dB (12 time constants) or at T frames.
    """
    b, c, f, t = power.shape
    taps = int(min(t, 12 * float(decay.max()) + 1))
    k = torch.arange(1, taps, device=power.device, dtype=power.dtype)  # lags 1..taps-1
    tail = torch.exp(-k[None, :] / decay.to(power)[:, None])  # (B, taps-1)
    tail = tail / tail.sum(dim=1, keepdim=True) * wet.to(power)[:, None]
    kernel = nn.functional.pad(tail, (1, 0))  # (B, taps); lag 0, the dry sound, is kept as is
    kernel = kernel.flip(1).repeat_interleave(c * f, dim=0)[:, None, :]  # (B*C*F, 1, taps)
    x = nn.functional.pad(power.reshape(1, b * c * f, t), (taps - 1, 0))  # causal
    return power + nn.functional.conv1d(x, kernel, groups=b * c * f).reshape(b, c, f, t)


def spec_augment(x: torch.Tensor, cfg, chosen: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Zero random frequency and time stripes of the chosen clips of (B, C, F, T)."""
    b, _, f, t = x.shape
    keep = torch.ones(b, 1, f, t)
    for n_masks, max_width, axis, size in (
        (cfg.freq_masks, cfg.freq_width, 2, f),
        (cfg.time_masks, cfg.time_width, 3, t),
    ):
        for _ in range(n_masks):
            width = torch.randint(0, min(max_width, size) + 1, (b,), generator=g)
            start = (torch.rand(b, generator=g) * (size - width + 1)).long()
            pos = torch.arange(size)[None, :]
            stripe = (
                (pos >= start[:, None]) & (pos < (start + width)[:, None]) & chosen[:, None]
            )  # (B, size)
            keep *= ~(stripe[:, None, :, None] if axis == 2 else stripe[:, None, None, :])
    return x * keep.to(x.device)


def mixup(
    x: torch.Tensor, target: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each clip with clip ``perm[i]``: ``lam * a + (1 - lam) * b`` for inputs and soft targets (B, C)."""
    perm = perm.to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


class Augmenter(nn.Module):
    """All training augmentations of ``augment.*``, applied in a fixed order.

    Args:
        cfg: the validated ``augment`` section.
        mean, std: the statistics that normalised the cached dB features, broadcastable to
            (C, F, T) (see :func:`audioclf.features.table.stat_tensor`).
        n_classes: classes, for MixUp's soft labels.

    Call with normalised features (B, 1, n_mels, T), int labels (B,) and the
    training generator; returns the augmented features and the targets: the int
    labels, or (B, n_classes) probabilities when MixUp applied.
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        mean: torch.Tensor | float,
        std: torch.Tensor | float,
        n_classes: int,
    ):
        super().__init__()
        self.cfg, self.n_classes = cfg, n_classes
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32), persistent=False)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, b = self.cfg, len(x)
        if not cfg.enabled:
            return x, y
        mean, std = self.mean.to(x.device), self.std.to(x.device)  # broadcastable to (C, F, T)
        db = x * std + mean  # (B, C, F, T) in dB
        if cfg.gain.p > 0:
            offset = _chosen(cfg.gain.p, b, g) * _uniform(
                -cfg.gain.max_db, cfg.gain.max_db, b, g
            )  # (B,)
            db = db + offset.to(db)[:, None, None, None]
        if cfg.pitch_shift.p > 0:
            m = cfg.pitch_shift.max_bins
            db = pitch_shift(
                db, torch.randint(-m, m + 1, (b,), generator=g) * _chosen(cfg.pitch_shift.p, b, g)
            )
        if cfg.time_stretch.p > 0:
            r = cfg.time_stretch.max_rate
            rates = torch.where(
                _chosen(cfg.time_stretch.p, b, g), _uniform(1 - r, 1 + r, b, g), torch.ones(b)
            )
            spare = (db.shape[3] / rates - db.shape[3]).clamp_min(
                0
            )  # extra output frames when slowed down
            db = time_stretch(db, rates, (torch.rand(b, generator=g) * spare).floor())
        if cfg.reverb.p > 0 or cfg.background.p > 0 or cfg.noise.p > 0:
            db = _db(self._power_domain(_power(db), g))
        x = (db - mean) / std
        target = y
        if cfg.mixup.p > 0 and torch.rand(1, generator=g).item() < cfg.mixup.p:
            # numpy draws the Beta sample (torch's Beta takes no generator), seeded from the training generator
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
            lam = float(rng.beta(cfg.mixup.alpha, cfg.mixup.alpha))
            soft = nn.functional.one_hot(y, self.n_classes).float()
            x, target = mixup(x, soft, lam, torch.randperm(b, generator=g))
        if cfg.specaugment.p > 0:
            x = spec_augment(x, cfg.specaugment, _chosen(cfg.specaugment.p, b, g), g)
        return x, target

    def _power_domain(self, power: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        cfg, b = self.cfg, len(power)
        if cfg.reverb.p > 0:
            lo, hi = cfg.reverb.decay_frames
            wet = _chosen(cfg.reverb.p, b, g) * torch.pow(
                10.0, _uniform(*cfg.reverb.wet_db, b, g) / 10
            )
            power = reverb(power, _uniform(lo, hi, b, g), wet)
        if cfg.background.p > 0:
            chosen, snr = _chosen(cfg.background.p, b, g), _uniform(*cfg.background.snr_db, b, g)
            other = power[torch.randperm(b, generator=g).to(power.device)]
            gain = (
                torch.pow(10.0, -snr / 10).to(power)[:, None, None, None]
                * chosen.to(power)[:, None, None, None]
            )
            power = power + gain * _mean_power(power) / _mean_power(other) * other
        if cfg.noise.p > 0:
            chosen, snr = _chosen(cfg.noise.p, b, g), _uniform(*cfg.noise.snr_db, b, g)
            level = _mean_power(power) / torch.pow(10.0, snr / 10).to(power)[:, None, None, None]
            exp_noise = -torch.log1p(-torch.rand(power.shape, generator=g)).to(
                power
            )  # Exp(1) per bin
            power = power + chosen.to(power)[:, None, None, None] * level * exp_noise
        return power
