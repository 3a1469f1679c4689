"""Typed params of the data: where it comes from (``data.*``; each adapter's own section in
:mod:`audioclf.config.datasets`), ``split`` and ``audit``.

Validation happens when params are loaded, so a bad fraction or level fails before any
download starts, naming the key and the fix.
"""

from __future__ import annotations

import dataclasses

from audioclf.config.datasets import (
    EmodbConfig,
    Esc50Config,
    FolderConfig,
    SyntheticConfig,
    XenocantoConfig,
)
from audioclf.config.schema import at_most, check, choice

DATASETS = (
    "synthetic",
    "esc50",
    "emodb",
    "xenocanto",
    "folder",
)  # adapters: audioclf.data.datasets
STRATEGIES = ("holdout", "official", "kfold", "logo")  # audioclf.data.split
LEVELS = (
    "error",
    "warn",
    "exclude",
)  # what an audit finding does (docs/pipeline.md, the leakage audit)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the audio comes from, and how real datasets are downloaded.

    ``archive`` points at a local copy of a real dataset (a zip, or the folder it
    extracts to) and skips the download. Downloads are cached in ``download_dir``,
    outside the DVC outputs, so a rerun or an interrupted download never starts over.
    Relative paths are resolved against ``DVC_ROOT`` inside DVC experiments.
    """

    archive: str | None = None
    download_dir: str = "data/downloads"
    retries: int = 4  # extra attempts after a 429, 5xx or dropped connection
    backoff_s: float = 2.0  # wait before retry k: backoff_s * 2**k seconds
    # each read of a request; an API answer and a Xeno-canto recording get it in all (a deadline)
    timeout_s: float = 60.0
    max_archive_gb: float = 100.0  # uncompressed bytes an archive may give, counted while copying
    # of any zip member (a 410 KB zip of 200 MB: ~500), and of a whole zip: bytes taken out per
    # byte of the zip, so a zip gives at most min(max_archive_gb, this x its size)
    max_compression_ratio: float = 100.0
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    esc50: Esc50Config = dataclasses.field(default_factory=Esc50Config)
    emodb: EmodbConfig = dataclasses.field(default_factory=EmodbConfig)
    xenocanto: XenocantoConfig = dataclasses.field(default_factory=XenocantoConfig)
    folder: FolderConfig = dataclasses.field(default_factory=FolderConfig)

    def __post_init__(self):
        check(
            self.archive is None or self.archive.strip() != "",
            "data.archive",
            "must be null or the path of a zip or folder",
        )
        check(self.download_dir.strip() != "", "data.download_dir", "must be a folder path")
        check(self.retries >= 0, "data.retries", f"must be >= 0, got {self.retries}")
        at_most(self.retries, 20, "data.retries", "the wait doubles with each")
        at_most(self.backoff_s, 600.0, "data.backoff_s", "seconds before the first retry")
        at_most(self.timeout_s, 3600.0, "data.timeout_s", "seconds a request may wait")
        check(self.backoff_s >= 0, "data.backoff_s", f"must be >= 0, got {self.backoff_s}")
        check(self.timeout_s > 0, "data.timeout_s", f"must be positive, got {self.timeout_s}")
        check(
            self.max_archive_gb > 0,
            "data.max_archive_gb",
            f"must be positive, got {self.max_archive_gb}",
        )
        check(
            self.max_compression_ratio >= 1,
            "data.max_compression_ratio",
            f"must be >= 1, got {self.max_compression_ratio}",
        )


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Grouped, stratified train/val/test fractions."""

    strategy: str = "holdout"
    train: float = 0.50
    val: float = 0.15
    test: float = 0.35
    k: int = 5
    fold_column: str = "fold"
    leaky: bool = False
    merge_duplicates: bool = False  # one group for copies (exact or near) before splitting

    def __post_init__(self):
        choice(self.strategy, STRATEGIES, "split.strategy")
        check(self.k >= 2, "split.k", f"must be >= 2, got {self.k}")
        at_most(self.k, 100, "split.k", "folds, each a training")
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            check(0 < value < 1, f"split.{name}", f"must be a fraction in (0, 1), got {value}")
        total = self.train + self.val + self.test
        check(abs(total - 1) < 1e-6, "split", f"train + val + test must sum to 1, got {total:g}")
        check(
            not (self.merge_duplicates and self.strategy == "official"),
            "split.merge_duplicates",
            "cannot merge groups across a dataset's official folds; use audit.near_duplicates: "
            "warn or exclude to keep them, or another split.strategy",
        )


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """Leakage audit: what each finding does (``error``: fail; ``warn``: report and go on;
    ``exclude``: go on, and also score each test fold without its flagged files), and the
    near-duplicate threshold."""

    exact_duplicates: str = "error"
    near_duplicates: str = "error"
    max_ber: float = 0.2
    pretrained_ids: tuple[str, ...] = ()
    pretrained_overlap: str = "error"
    max_file_seconds: float = 600.0  # decode at most this much of a file: memory stays bounded

    def __post_init__(self):
        choice(self.exact_duplicates, LEVELS, "audit.exact_duplicates")
        choice(self.near_duplicates, LEVELS, "audit.near_duplicates")
        choice(self.pretrained_overlap, LEVELS, "audit.pretrained_overlap")
        check(0 < self.max_ber < 0.5, "audit.max_ber", f"must be in (0, 0.5), got {self.max_ber}")
        check(
            self.max_file_seconds > 0,
            "audit.max_file_seconds",
            f"must be positive, got {self.max_file_seconds}",
        )
        at_most(self.max_file_seconds, 4 * 3600.0, "audit.max_file_seconds", "one decode")
