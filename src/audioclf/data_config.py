"""Typed params of the real-dataset adapters: ``data.esc50``, ``data.emodb``,
``data.xenocanto`` and ``data.folder`` (fields of :class:`audioclf.config.DataConfig`).

Validation happens when params are loaded, so a bad regex or URL fails before any
download starts, naming the key and the fix.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from audioclf.schema import check

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"
EMODB_URL = "http://emodb.bilderbar.info/download/download.zip"
XENOCANTO_API = "https://xeno-canto.org/api/3/recordings"
QUALITY_GRADES = ("A", "B", "C", "D", "E")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
# five common, well-recorded European songbirds: a small real bird-species problem
DEFAULT_SPECIES = ("Erithacus rubecula", "Fringilla coelebs", "Parus major",
                   "Sylvia atricapilla", "Turdus merula")



def check_url(url: str, key: str) -> None:
    check(re.match(r"^https?://[^/\s]+", url) is not None, key, f"must be an http(s) URL, got {url!r}")


def check_sha256(digest: Optional[str], key: str) -> None:
    check(digest is None or re.fullmatch(r"[0-9a-fA-F]{64}", digest) is not None, key,
           f"must be null or a 64-character hex sha256 digest, got {digest!r}")


def check_regex(pattern: Optional[str], group: str, key: str) -> None:
    """Check that ``pattern`` compiles and captures a named group ``group``."""
    if pattern is None:
        return
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        check(False, key, f"is not a valid regular expression ({exc}): {pattern!r}")
    check(group in compiled.groupindex, key,
           f"must capture a named group (?P<{group}>...), got {pattern!r}")


@dataclasses.dataclass(frozen=True)
class Esc50Config:
    """ESC-50: 2000 five-second environmental clips in 50 classes (see :mod:`audioclf.datasets.esc50`)."""

    url: str = ESC50_URL
    sha256: Optional[str] = None   # expected digest of the zip; null = the one pinned in code
    esc10: bool = False            # keep only the 10-class ESC-10 subset (400 clips)

    def __post_init__(self):
        check_url(self.url, "data.esc50.url")
        check_sha256(self.sha256, "data.esc50.sha256")


@dataclasses.dataclass(frozen=True)
class EmodbConfig:
    """EmoDB: 535 German utterances, 7 emotions, 10 speakers (see :mod:`audioclf.datasets.emodb`)."""

    url: str = EMODB_URL
    sha256: Optional[str] = None

    def __post_init__(self):
        check_url(self.url, "data.emodb.url")
        check_sha256(self.sha256, "data.emodb.sha256")


@dataclasses.dataclass(frozen=True)
class XenocantoConfig:
    """A Xeno-canto API v3 query (see :mod:`audioclf.datasets.xenocanto`).

    Exactly one of ``species`` (one query per "Genus species") and ``query`` (a raw
    v3 query string, e.g. ``'grp:birds cnt:Netherlands'``) is set: to use ``query``,
    also set ``species: []``.
    """

    api_url: str = XENOCANTO_API
    species: tuple[str, ...] = DEFAULT_SPECIES
    query: Optional[str] = None
    quality: Optional[str] = "A"   # adds q:<grade> to the query; null = any rating
    max_per_species: int = 30
    max_recordings: int = 1000
    per_page: int = 100
    min_interval_s: float = 1.0    # polite gap between requests to xeno-canto

    def __post_init__(self):
        key = "data.xenocanto"
        check_url(self.api_url, f"{key}.api_url")
        check(bool(self.species) != (self.query is not None), key,
               f"needs exactly one of 'species' (a list of 'Genus species') or 'query' (a raw API v3 "
               f"query string; set species: [] to use query); got species={list(self.species)}, query={self.query!r}")
        for i, name in enumerate(self.species):
            check(re.fullmatch(r"[A-Za-z]+ [a-z-]+", name) is not None, f"{key}.species[{i}]",
                   f"must be a scientific name 'Genus species', got {name!r}")
        check(self.query is None or self.query.strip() != "", f"{key}.query", "must not be empty")
        check(self.quality is None or self.quality in QUALITY_GRADES, f"{key}.quality",
               f"is {self.quality!r}; allowed values: null, {', '.join(QUALITY_GRADES)}")
        check(not (self.quality and self.query and re.search(r"(^|\s)q[:<>]", self.query)),
               f"{key}.quality", f"must be null when data.xenocanto.query has its own q: tag ({self.query!r})")
        check(self.max_per_species >= 1, f"{key}.max_per_species", f"must be >= 1, got {self.max_per_species}")
        check(self.max_recordings >= 1, f"{key}.max_recordings", f"must be >= 1, got {self.max_recordings}")
        check(50 <= self.per_page <= 500, f"{key}.per_page",
               f"must be in [50, 500] (the API's limits), got {self.per_page}")
        check(self.min_interval_s >= 0, f"{key}.min_interval_s", f"must be >= 0, got {self.min_interval_s}")


@dataclasses.dataclass(frozen=True)
class FolderConfig:
    """The user's own audio, from ``data.archive`` (a folder or a zip; see :mod:`audioclf.datasets.folder`).

    label: ``label_column`` of ``csv``, else ``label_regex`` on the file name, else the
    class sub-folder. group: ``group_column``, else ``group_regex``, else the file stem.
    """

    csv: Optional[str] = None             # table inside the archive (or absolute path)
    path_column: str = "path"             # file paths, relative to the CSV's folder
    label_column: Optional[str] = None
    group_column: Optional[str] = None
    label_regex: Optional[str] = None     # with (?P<label>...), searched in the file name
    group_regex: Optional[str] = None     # with (?P<group>...), searched in the file name
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS

    def __post_init__(self):
        key = "data.folder"
        for name in ("label_column", "group_column"):
            check(self.csv is not None or getattr(self, name) is None, f"{key}.{name}",
                   f"reads a column of data.folder.csv, which is null; set data.folder.csv or drop {name}")
        check_regex(self.label_regex, "label", f"{key}.label_regex")
        check_regex(self.group_regex, "group", f"{key}.group_regex")
        check(len(self.extensions) > 0, f"{key}.extensions", "must list at least one file extension")
        for i, ext in enumerate(self.extensions):
            check(re.fullmatch(r"\.[A-Za-z0-9]+", ext) is not None, f"{key}.extensions[{i}]",
                   f"must look like '.wav', got {ext!r}")
