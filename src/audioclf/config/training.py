"""Typed params of training: ``train`` (optimisation) and ``augment`` (on-the-fly augmentation),
and :class:`TrainSpec`, all that :func:`audioclf.training.loop.train` reads.

Validated when params are loaded, so a bad value fails before any work starts, naming
the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from audioclf.config.schema import at_most, check, choice

SCHEDULES = ("constant", "cosine", "step")
SAMPLERS = ("balanced", "shuffle")
AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")
NORMS = ("band", "global", "group")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, precision, device, early stopping and the training seed.

    The learning rate of the backbone is ``lr * backbone_lr_mult`` (the head, i.e. the
    classifier layers, trains at ``lr``). Warm-up ramps the rate linearly from 0 over
    ``warmup_epochs``; it is off by default, which is what pretrained backbones want.
    With ``devices * nodes`` above one, ``batch_size`` is per process (the effective
    batch is ``batch_size * accumulate * processes``; see :mod:`audioclf.training.distributed`).
    ``seed`` seeds training alone (the data and the split follow the top-level ``seed``),
    so runs that differ only in it measure the spread of training on one split.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 8  # epochs without a new best epoch (audioclf.training.stopping)
    # the first epoch that may be kept as the best (so no early stop before min_epochs + patience);
    # None: a quarter of epochs (a small set may start learning only after a few dozen optimizer steps,
    # and a tiny validation split can score an untrained network's early epoch highest)
    min_epochs: int | None = None
    grad_clip: float = 5.0
    # weights averaged over the optimizer steps (an exponential moving average with this decay),
    # validated and saved in place of the last step's; 0: off
    ema: float = 0.99  # as params.yaml
    backbone_lr_mult: float = 1.0
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    step_epochs: int = 10  # schedule=step: multiply the rate by step_gamma every step_epochs
    step_gamma: float = 0.1
    accumulate: int = 1  # batches per optimizer step
    amp: str = "auto"  # auto: bf16 (else fp16) on CUDA, off on CPU
    device: str = "auto"  # auto: CUDA when present
    sampler: str = "shuffle"  # balanced: classes drawn equally often (with replacement)
    # input statistics: the training split's, global (per channel) | band (per channel and band); group:
    # each group's own, per channel and band (transductive: test groups' unlabelled files are seen)
    norm: str = "global"
    devices: Any = 1  # processes per node (an int >= 1) or "auto": every visible GPU
    nodes: int = 1  # machines; more than one process trains data-parallel under torchrun
    seed: int | None = None  # training alone; None: the top-level seed

    def __post_init__(self):
        count = isinstance(self.devices, int) and not isinstance(self.devices, bool)
        check(
            self.devices == "auto" or (count and self.devices >= 1),
            "train.devices",
            f"must be an integer >= 1 or 'auto', got {self.devices!r}",
        )
        for name in ("epochs", "batch_size", "patience", "step_epochs", "accumulate", "nodes"):
            value = getattr(self, name)
            check(value >= 1, f"train.{name}", f"must be >= 1, got {value}")
        for name, limit, why in (
            ("epochs", 100_000, "passes over the training split"),
            ("batch_size", 65536, "clips per step"),
            ("accumulate", 4096, "batches per optimizer step"),
            ("nodes", 1024, "machines"),
        ):
            at_most(getattr(self, name), limit, f"train.{name}", why)
        if count:
            at_most(self.devices, 1024, "train.devices", "processes per machine")
        check(
            self.min_epochs is None or self.min_epochs >= 1,
            "train.min_epochs",
            f"must be null (a quarter of train.epochs) or an integer >= 1, got {self.min_epochs}",
        )
        check(self.lr > 0, "train.lr", f"must be positive, got {self.lr}")
        check(
            self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        check(self.grad_clip > 0, "train.grad_clip", f"must be positive, got {self.grad_clip}")
        check(0 <= self.ema < 1, "train.ema", f"must be in [0, 1) (0: off), got {self.ema}")
        check(
            self.backbone_lr_mult >= 0,
            "train.backbone_lr_mult",
            f"must be >= 0, got {self.backbone_lr_mult}",
        )
        check(
            0 <= self.warmup_epochs < self.epochs,
            "train.warmup_epochs",
            f"must be in [0, train.epochs={self.epochs}), got {self.warmup_epochs}",
        )
        check(
            0 < self.step_gamma <= 1,
            "train.step_gamma",
            f"must be in (0, 1], got {self.step_gamma}",
        )
        choice(self.schedule, SCHEDULES, "train.schedule")
        choice(self.amp, AMP_MODES, "train.amp")
        choice(self.device, DEVICES, "train.device")
        choice(self.sampler, SAMPLERS, "train.sampler")
        choice(self.norm, NORMS, "train.norm")
        check(
            self.seed is None or self.seed >= 0,
            "train.seed",
            f"must be null or an integer >= 0, got {self.seed}",
        )

    @property
    def watched_from(self) -> int:
        """The first epoch that may be kept as the best (:mod:`audioclf.training.stopping`).

        >>> TrainConfig(epochs=30).watched_from, TrainConfig(epochs=30, min_epochs=4).watched_from
        (8, 4)
        """
        return -(-self.epochs // 4) if self.min_epochs is None else self.min_epochs


def _check_p(p: float, key: str) -> None:
    check(0 <= p <= 1, f"{key}.p", f"must be a probability in [0, 1], got {p}")


def _check_range(lo_hi: tuple[float, float], key: str) -> None:
    check(lo_hi[0] <= lo_hi[1], key, f"must be [low, high] with low <= high, got {list(lo_hi)}")


@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig:
    """Frequency and time masks (Park et al. 2019), each of width up to the given bins/frames."""

    p: float = 0.0
    freq_masks: int = 2
    freq_width: int = 16
    time_masks: int = 2
    time_width: int = 24

    def __post_init__(self):
        _check_p(self.p, "augment.specaugment")
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            value = getattr(self, name)
            check(value >= 0, f"augment.specaugment.{name}", f"must be >= 0, got {value}")
            at_most(value, 10_000, f"augment.specaugment.{name}", "masks or bins per clip")


@dataclasses.dataclass(frozen=True)
class MixupConfig:
    """MixUp (Zhang et al. 2018): per batch with probability p, mixing weight ~ Beta(alpha, alpha)."""

    p: float = 0.0
    alpha: float = 0.4

    def __post_init__(self):
        _check_p(self.p, "augment.mixup")
        check(self.alpha > 0, "augment.mixup.alpha", f"must be positive, got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Additive white noise at an SNR drawn uniformly from ``snr_db``."""

    p: float = 0.0
    snr_db: tuple[float, float] = (10.0, 30.0)

    def __post_init__(self):
        _check_p(self.p, "augment.noise")
        _check_range(self.snr_db, "augment.noise.snr_db")


@dataclasses.dataclass(frozen=True)
class BackgroundConfig:
    """Another training clip of the batch mixed in as background, at an SNR drawn from ``snr_db``."""

    p: float = 0.0
    snr_db: tuple[float, float] = (0.0, 20.0)

    def __post_init__(self):
        _check_p(self.p, "augment.background")
        _check_range(self.snr_db, "augment.background.snr_db")


@dataclasses.dataclass(frozen=True)
class GainConfig:
    """Level change drawn uniformly from [-max_db, max_db]."""

    p: float = 0.0
    max_db: float = 6.0

    def __post_init__(self):
        _check_p(self.p, "augment.gain")
        check(self.max_db >= 0, "augment.gain.max_db", f"must be >= 0, got {self.max_db}")


@dataclasses.dataclass(frozen=True)
class PitchShiftConfig:
    """Shift of up to ``max_bins`` mel bins, up or down."""

    p: float = 0.0
    max_bins: int = 4

    def __post_init__(self):
        _check_p(self.p, "augment.pitch_shift")
        check(
            self.max_bins >= 0, "augment.pitch_shift.max_bins", f"must be >= 0, got {self.max_bins}"
        )
        at_most(self.max_bins, 2048, "augment.pitch_shift.max_bins", "mel bins")


@dataclasses.dataclass(frozen=True)
class TimeStretchConfig:
    """Speed change by a rate drawn uniformly from [1 - max_rate, 1 + max_rate]."""

    p: float = 0.0
    max_rate: float = 0.2

    def __post_init__(self):
        _check_p(self.p, "augment.time_stretch")
        check(
            0 <= self.max_rate < 1,
            "augment.time_stretch.max_rate",
            f"must be in [0, 1), got {self.max_rate}",
        )


@dataclasses.dataclass(frozen=True)
class ReverbConfig:
    """An exponentially decaying tail with time constant ``decay_frames`` and energy ``wet_db`` re. the dry sound."""

    p: float = 0.0
    decay_frames: tuple[float, float] = (1.0, 8.0)
    wet_db: tuple[float, float] = (-12.0, -3.0)

    def __post_init__(self):
        _check_p(self.p, "augment.reverb")
        _check_range(self.wet_db, "augment.reverb.wet_db")
        _check_range(self.decay_frames, "augment.reverb.decay_frames")
        check(
            self.decay_frames[0] > 0,
            "augment.reverb.decay_frames",
            f"must be positive, got {list(self.decay_frames)}",
        )
        at_most(self.decay_frames[1], 10_000, "augment.reverb.decay_frames", "frames")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly augmentation of training batches (never val or test, never written to disk).

    All are off (``p: 0``) by default; see :mod:`audioclf.training.augment` for how each
    waveform augmentation is realised on the cached log-mel.
    """

    specaugment: SpecAugmentConfig = dataclasses.field(default_factory=SpecAugmentConfig)
    mixup: MixupConfig = dataclasses.field(default_factory=MixupConfig)
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    gain: GainConfig = dataclasses.field(default_factory=GainConfig)
    pitch_shift: PitchShiftConfig = dataclasses.field(default_factory=PitchShiftConfig)
    time_stretch: TimeStretchConfig = dataclasses.field(default_factory=TimeStretchConfig)
    reverb: ReverbConfig = dataclasses.field(default_factory=ReverbConfig)
    background: BackgroundConfig = dataclasses.field(default_factory=BackgroundConfig)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name).p > 0 for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Everything a training reads: model and loss (by name, with their configs),
    optimisation, augmentation and the training seed (``train.seed``, else the top-level
    ``seed``). Built from the params by :meth:`audioclf.config.Params.train_spec`.
    """

    model: str
    model_config: Any
    loss: str
    loss_config: Any
    train: TrainConfig
    augment: AugmentConfig
    seed: int

    def resolved(self) -> dict:
        """The spec as params.yaml would hold it (JSON-able): stored in checkpoints, hashed to resume."""
        return {
            "model": self.model,
            "model_params": {self.model: dataclasses.asdict(self.model_config)},
            "loss": self.loss,
            "loss_params": {self.loss: dataclasses.asdict(self.loss_config)},
            "train": dataclasses.asdict(self.train),
            "augment": dataclasses.asdict(self.augment),
            "seed": self.seed,
        }
