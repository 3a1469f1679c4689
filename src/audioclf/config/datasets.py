"""Typed params of the dataset adapters: ``data.synthetic``, ``data.esc50``, ``data.emodb``,
``data.xenocanto`` and ``data.folder`` (fields of :class:`audioclf.config.data.DataConfig`).

Validation happens when params are loaded, so a bad regex or URL fails before any download
starts, naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from audioclf.config.schema import at_most, check

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"
EMODB_URL = "http://emodb.bilderbar.info/download/download.zip"
XENOCANTO_API = "https://xeno-canto.org/api/3/recordings"
QUALITY_GRADES = ("A", "B", "C", "D", "E")
MAX_SYNTHETIC_HOURS = 200  # the defaults generate at most 5.3 h
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
# five common, well-recorded European songbirds: a small real bird-species problem
DEFAULT_SPECIES = (
    "Erithacus rubecula",
    "Fringilla coelebs",
    "Parus major",
    "Sylvia atricapilla",
    "Turdus merula",
)


def check_url(url: str, key: str) -> None:
    check(
        re.match(r"^https?://[^/\s]+", url) is not None, key, f"must be an http(s) URL, got {url!r}"
    )


def check_hosts(hosts: tuple[str, ...], key: str) -> None:
    for i, host in enumerate(hosts):
        check(
            re.fullmatch(r"[A-Za-z0-9.-]+", host) is not None,
            f"{key}[{i}]",
            f"must be a host name like 'example.org', got {host!r}",
        )


def url_host(url: str) -> str:
    """The host of an http(s) URL, lower-cased: a source's own host is always allowed."""
    return (urllib.parse.urlsplit(url).hostname or "").lower()


def check_sha256(digest: str | None, key: str) -> None:
    check(
        digest is None or re.fullmatch(r"[0-9a-fA-F]{64}", digest) is not None,
        key,
        f"must be null or a 64-character hex sha256 digest, got {digest!r}",
    )


def check_regex(pattern: str | None, group: str, key: str) -> None:
    """Check that ``pattern`` compiles and captures a named group ``group``."""
    if pattern is None:
        return
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        check(False, key, f"is not a valid regular expression ({exc}): {pattern!r}")
    check(
        group in compiled.groupindex,
        key,
        f"must capture a named group (?P<{group}>...), got {pattern!r}",
    )


@dataclasses.dataclass(frozen=True)
class Esc50Config:
    """ESC-50: 2000 five-second environmental clips in 50 classes (see :mod:`audioclf.data.datasets.esc50`)."""

    url: str = ESC50_URL
    sha256: str | None = None  # expected digest of the zip; null = the one pinned in code
    esc10: bool = False  # keep only the 10-class ESC-10 subset (400 clips)
    allowed_hosts: tuple[str, ...] = (
        "codeload.github.com",
    )  # redirects may go there, besides url's host

    def __post_init__(self):
        check_url(self.url, "data.esc50.url")
        check_sha256(self.sha256, "data.esc50.sha256")
        check_hosts(self.allowed_hosts, "data.esc50.allowed_hosts")

    @property
    def hosts(self) -> tuple[str, ...]:
        return (url_host(self.url), *self.allowed_hosts)


@dataclasses.dataclass(frozen=True)
class EmodbConfig:
    """EmoDB: 535 German utterances, 7 emotions, 10 speakers (see :mod:`audioclf.data.datasets.emodb`)."""

    url: str = EMODB_URL
    sha256: str | None = None
    allowed_hosts: tuple[str, ...] = ()  # redirects may go there, besides url's host

    def __post_init__(self):
        check_url(self.url, "data.emodb.url")
        check_sha256(self.sha256, "data.emodb.sha256")
        check_hosts(self.allowed_hosts, "data.emodb.allowed_hosts")

    @property
    def hosts(self) -> tuple[str, ...]:
        return (url_host(self.url), *self.allowed_hosts)


@dataclasses.dataclass(frozen=True)
class XenocantoConfig:
    """A Xeno-canto API v3 query (see :mod:`audioclf.data.datasets.xenocanto`).

    Exactly one of ``species`` (one query per "Genus species") and ``query`` (a raw
    v3 query string, e.g. ``'grp:birds cnt:Netherlands'``) is set: to use ``query``,
    also set ``species: []``.
    """

    api_url: str = XENOCANTO_API
    species: tuple[str, ...] = DEFAULT_SPECIES
    query: str | None = None
    quality: str | None = "A"  # adds q:<grade> to the query; null = any rating
    max_per_species: int = 30
    max_recordings: int = 1000
    per_page: int = 100
    min_interval_s: float = 1.0  # polite gap between requests to xeno-canto
    allowed_hosts: tuple[str, ...] = ("xeno-canto.org",)  # recordings are fetched from these only

    @property
    def hosts(self) -> tuple[str, ...]:
        """The API's host and :attr:`allowed_hosts`: the only hosts a request or redirect may name."""
        return (url_host(self.api_url), *self.allowed_hosts)

    def __post_init__(self):
        key = "data.xenocanto"
        check_url(self.api_url, f"{key}.api_url")
        check_hosts(self.allowed_hosts, f"{key}.allowed_hosts")
        check(
            bool(self.species) != (self.query is not None),
            key,
            f"needs exactly one of 'species' (a list of 'Genus species') or 'query' (a raw API v3 "
            f"query string; set species: [] to use query); got species={list(self.species)}, query={self.query!r}",
        )
        for i, name in enumerate(self.species):
            check(
                re.fullmatch(r"[A-Za-z]+ [a-z-]+", name) is not None,
                f"{key}.species[{i}]",
                f"must be a scientific name 'Genus species', got {name!r}",
            )
        check(self.query is None or self.query.strip() != "", f"{key}.query", "must not be empty")
        check(
            self.quality is None or self.quality in QUALITY_GRADES,
            f"{key}.quality",
            f"is {self.quality!r}; allowed values: null, {', '.join(QUALITY_GRADES)}",
        )
        check(
            not (self.quality and self.query and re.search(r"(^|\s)q[:<>]", self.query)),
            f"{key}.quality",
            f"must be null when data.xenocanto.query has its own q: tag ({self.query!r})",
        )
        check(
            self.max_per_species >= 1,
            f"{key}.max_per_species",
            f"must be >= 1, got {self.max_per_species}",
        )
        check(
            self.max_recordings >= 1,
            f"{key}.max_recordings",
            f"must be >= 1, got {self.max_recordings}",
        )
        at_most(self.max_per_species, 10_000, f"{key}.max_per_species", "recordings per label")
        at_most(self.max_recordings, 100_000, f"{key}.max_recordings", "recordings downloaded")
        check(
            50 <= self.per_page <= 500,
            f"{key}.per_page",
            f"must be in [50, 500] (the API's limits), got {self.per_page}",
        )
        check(
            self.min_interval_s >= 0,
            f"{key}.min_interval_s",
            f"must be >= 0, got {self.min_interval_s}",
        )


@dataclasses.dataclass(frozen=True)
class FolderConfig:
    """The user's own audio, from ``data.archive`` (a folder or a zip; see :mod:`audioclf.data.datasets.folder`).

    label: ``label_column`` of ``csv``, else ``label_regex`` on the file name, else the
    class sub-folder. group: ``group_column``, else ``group_regex``, else the file stem.
    """

    csv: str | None = None  # table inside the archive (or absolute path)
    path_column: str = "path"  # file paths, relative to the CSV's folder
    label_column: str | None = None
    group_column: str | None = None
    label_regex: str | None = None  # with (?P<label>...), searched in the file name
    group_regex: str | None = None  # with (?P<group>...), searched in the file name
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS

    def __post_init__(self):
        key = "data.folder"
        for name in ("label_column", "group_column"):
            check(
                self.csv is not None or getattr(self, name) is None,
                f"{key}.{name}",
                f"reads a column of data.folder.csv, which is null; set data.folder.csv or drop {name}",
            )
        check_regex(self.label_regex, "label", f"{key}.label_regex")
        check_regex(self.group_regex, "group", f"{key}.group_regex")
        check(
            len(self.extensions) > 0, f"{key}.extensions", "must list at least one file extension"
        )
        for i, ext in enumerate(self.extensions):
            check(
                re.fullmatch(r"\.[A-Za-z0-9]+", ext) is not None,
                f"{key}.extensions[{i}]",
                f"must look like '.wav', got {ext!r}",
            )


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """The embedded bird-call-like dataset (see :mod:`audioclf.data.datasets.synthetic`)."""

    n_classes: int = 24
    max_clips_per_class: int = 180
    imbalance: float = 5.0
    clips_per_recording: tuple[int, int] = (2, 5)
    clip_seconds: float = 2.0
    sample_rate: int = 22050
    snr_db: tuple[float, float] = (0.0, 15.0)

    def __post_init__(self):
        check(
            self.n_classes >= 2, "data.synthetic.n_classes", f"must be >= 2, got {self.n_classes}"
        )
        check(
            self.imbalance >= 1, "data.synthetic.imbalance", f"must be >= 1, got {self.imbalance}"
        )
        lo, hi = self.clips_per_recording
        check(
            1 <= lo <= hi,
            "data.synthetic.clips_per_recording",
            f"must be [min, max] with 1 <= min <= max, got {list(self.clips_per_recording)}",
        )
        check(
            self.max_clips_per_class >= 3 * lo,
            "data.synthetic.max_clips_per_class",
            f"must allow 3 recordings of {lo} clips, got {self.max_clips_per_class}",
        )
        check(
            self.clip_seconds > 0,
            "data.synthetic.clip_seconds",
            f"must be positive, got {self.clip_seconds}",
        )
        check(
            self.sample_rate >= 8000,
            "data.synthetic.sample_rate",
            f"must be >= 8000, got {self.sample_rate}",
        )
        check(
            self.snr_db[0] <= self.snr_db[1],
            "data.synthetic.snr_db",
            f"must be [low, high], got {list(self.snr_db)}",
        )
        key = "data.synthetic"
        at_most(self.n_classes, 1000, f"{key}.n_classes", "distinct synthetic calls")
        at_most(self.max_clips_per_class, 100_000, f"{key}.max_clips_per_class", "clips per class")
        at_most(self.clip_seconds, 600.0, f"{key}.clip_seconds", "seconds per clip")
        at_most(self.sample_rate, 384_000, f"{key}.sample_rate", "Hz")
        hours = self.n_classes * self.max_clips_per_class * self.clip_seconds / 3600
        check(
            hours <= MAX_SYNTHETIC_HOURS,
            f"{key}.n_classes",
            f"x max_clips_per_class x clip_seconds ({self.n_classes} x "
            f"{self.max_clips_per_class} x {self.clip_seconds:g} s) is up to {hours:,.0f} hours "
            f"of audio to generate, above {MAX_SYNTHETIC_HOURS}; lower one of them",
        )
