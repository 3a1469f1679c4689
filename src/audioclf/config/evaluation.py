"""Typed params of the evaluate stage: ``evaluate.*``."""

from __future__ import annotations

import dataclasses

from audioclf.config.schema import at_most, check


@dataclasses.dataclass(frozen=True)
class BucketsConfig:
    """Training-frequency buckets: head >= ``head`` training clips, tail <= ``tail``, mid between."""

    head: int = 20
    tail: int = 5

    def __post_init__(self):
        check(self.tail >= 0, "evaluate.buckets.tail", f"must be >= 0, got {self.tail}")
        check(
            self.head > self.tail,
            "evaluate.buckets.head",
            f"must be > tail ({self.tail}), got {self.head}",
        )


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 64
    bootstrap: int = 1000
    ci_level: float = 0.95
    ece_bins: int = 15
    buckets: BucketsConfig = dataclasses.field(default_factory=BucketsConfig)

    def __post_init__(self):
        check(self.batch_size >= 1, "evaluate.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.bootstrap >= 1, "evaluate.bootstrap", f"must be >= 1, got {self.bootstrap}")
        check(0 < self.ci_level < 1, "evaluate.ci_level", f"must be in (0, 1), got {self.ci_level}")
        check(self.ece_bins >= 1, "evaluate.ece_bins", f"must be >= 1, got {self.ece_bins}")
        at_most(self.bootstrap, 100_000, "evaluate.bootstrap", "resamples per test metric")
        at_most(self.ece_bins, 1000, "evaluate.ece_bins", "calibration bins")
        at_most(self.batch_size, 65536, "evaluate.batch_size", "clips scored at once")
