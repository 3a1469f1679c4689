"""Typed params of the features stage: ``features.*`` (a field of :class:`audioclf.config.Params`).

Validation happens when params are loaded, so a bad value fails before any audio
is decoded, naming the key and the allowed values.
"""

from __future__ import annotations

import dataclasses

from audioclf.config.schema import check, choice

FRONTENDS = ("logmel", "mfcc")
SHORT_CLIPS = ("pad", "repeat")
DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    """Decoding, segmentation and the log-mel / MFCC front-end, and where the cache lives.

    Every field except ``batch_size``, ``workers``, ``device``, ``store_dir`` and
    ``min_coverage`` shapes the features, so it is part of the cache key
    (:func:`audioclf.features.store.frontend_key`).
    """

    kind: str = "logmel"
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    highpass_order: int = 0
    top_db: float = 80.0
    n_mfcc: int = 20
    delta_width: int = 9
    segment_seconds: float = 4.0
    segment_hop_seconds: float | None = None
    short_clips: str = "pad"
    max_file_seconds: float = 600.0
    batch_size: int = 32
    workers: int = 0
    device: str = "auto"
    store_dir: str = "data/feature_store"
    min_coverage: float = 0.9

    def __post_init__(self):

        choice(self.kind, FRONTENDS, "features.kind")
        choice(self.short_clips, SHORT_CLIPS, "features.short_clips")
        choice(self.device, DEVICES, "features.device")
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "n_mfcc", "batch_size"):
            value = getattr(self, name)
            check(value > 0, f"features.{name}", f"must be positive, got {value}")
        check(
            self.hop_length <= self.n_fft,
            "features.hop_length",
            f"must be <= n_fft ({self.n_fft}), got {self.hop_length}",
        )
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        check(
            0 <= self.f_min < f_max,
            "features.f_min",
            f"must be in [0, f_max={f_max:g}), got {self.f_min}",
        )
        check(
            f_max <= nyquist,
            "features.f_max",
            f"must be <= sample_rate/2 ({nyquist:g}), got {f_max}",
        )
        check(
            0 <= self.highpass_order <= 8,
            "features.highpass_order",
            f"must be in [0, 8] (0 = no high-pass), got {self.highpass_order}",
        )
        check(
            self.highpass_order == 0 or self.f_min > 0,
            "features.highpass_order",
            f"needs a cut-off: set features.f_min > 0 (got f_min={self.f_min}) or highpass_order: 0",
        )
        check(self.top_db > 0, "features.top_db", f"must be positive, got {self.top_db}")
        check(
            self.n_mfcc <= self.n_mels,
            "features.n_mfcc",
            f"must be <= n_mels ({self.n_mels}), got {self.n_mfcc}",
        )
        check(
            self.delta_width >= 3 and self.delta_width % 2 == 1,
            "features.delta_width",
            f"must be an odd number >= 3, got {self.delta_width}",
        )
        check(
            self.segment_seconds * self.sample_rate >= self.n_fft,
            "features.segment_seconds",
            f"must hold at least one FFT window ({self.n_fft} samples), got {self.segment_seconds}",
        )
        check(
            self.kind != "mfcc" or self.n_frames >= self.delta_width,
            "features.delta_width",
            f"must be <= the frames per segment ({self.n_frames}) for the deltas, got {self.delta_width}",
        )
        hop = self.segment_hop_seconds
        check(
            hop is None or 0 < hop * self.sample_rate,
            "features.segment_hop_seconds",
            f"must be null or positive, got {hop}",
        )
        check(
            self.max_file_seconds >= self.segment_seconds,
            "features.max_file_seconds",
            f"must be >= segment_seconds ({self.segment_seconds}), got {self.max_file_seconds}",
        )
        check(
            self.workers >= 0,
            "features.workers",
            f"must be >= 0 (0 = one per core), got {self.workers}",
        )
        check(self.store_dir.strip() != "", "features.store_dir", "must be a folder path")
        check(
            0 <= self.min_coverage <= 1,
            "features.min_coverage",
            f"must be a fraction in [0, 1], got {self.min_coverage}",
        )

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        """Samples between segment starts (``segment_hop_seconds``; null: back to back)."""
        if self.segment_hop_seconds is None:
            return self.segment_samples
        return max(1, int(round(self.segment_hop_seconds * self.sample_rate)))

    @property
    def n_frames(self) -> int:
        # centred STFT: one frame per hop plus the frame at t = 0
        return 1 + self.segment_samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, bands, frames) of one segment's features."""
        if self.kind == "mfcc":
            return 3, self.n_mfcc, self.n_frames  # coefficients, delta, delta-delta
        return 1, self.n_mels, self.n_frames
