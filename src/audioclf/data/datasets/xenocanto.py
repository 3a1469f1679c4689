"""``xenocanto``: bird recordings queried from the Xeno-canto API v3.

https://xeno-canto.org/explore/api. Every recording carries its own Creative Commons
licence and recordist, kept per file (columns ``licence``, ``recordist``): honour
them when sharing results. One recording is one group (``XC<id>``).

The API key comes from the environment variable ``XENO_CANTO_API_KEY`` and never
from params; it is sent to the API only, and scrubbed from every message. The
selected recordings of a query are cached (without the key) under
``data.download_dir/xenocanto/``, as are their audio files, so a rerun needs neither
the network nor the key; delete ``queries/`` there to query afresh.

The server is not trusted: an answer must be complete within ``data.timeout_s`` and at most
:data:`MAX_PAGE_BYTES` long, a query reads at most :func:`max_pages` pages whatever
``numPages`` claims, a recording may be at most :func:`max_audio_bytes` long for the duration
the API gives, a recording listed twice (by two queries, or on two pages) is kept once, and a
recording that cannot be fetched is skipped and listed in ``unreadable.json`` (after
:data:`MAX_FAILURES_IN_A_ROW` such failures in a row the server is taken to be down).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import urllib.parse
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from audioclf.data.datasets.fetch import (
    DownloadError,
    RefusedError,
    Throttle,
    TooLargeError,
    fetch_file,
    fetch_json,
)
from audioclf.data.datasets.source import SOURCE_FILE, Clip, describe_all, retry_policy
from audioclf.data.datasets.urls import redact, scrub
from audioclf.data.manifest import Entry
from audioclf.errors import printable
from audioclf.io import atomic_path, write_json

if TYPE_CHECKING:
    from audioclf.config.data import DataConfig
    from audioclf.config.datasets import XenocantoConfig

log = logging.getLogger(__name__)

KEY_ENV = "XENO_CANTO_API_KEY"
# fields kept from each API record (the cache holds nothing else)
FIELDS = ("id", "gen", "sp", "en", "rec", "lic", "q", "length", "file", "file-name", "url")
MAX_PAGE_BYTES = 32 << 20  # one page of at most 500 records is about 1 MB of JSON
# the richest audio a recordist uploads: 96 kHz stereo float32 (or 192 kHz mono), bytes a second
MAX_BYTES_PER_SECOND = 768_000
UNKNOWN_LENGTH_S = 600.0  # the duration assumed for the size cap when the API gives none
MAX_FAILURES_IN_A_ROW = 5


def max_pages(limit: int, per_page: int) -> int:
    """Pages one query may read: four times those ``limit`` recordings fill, plus ten (records
    without a file, or of a species already full, are passed over), whatever ``numPages`` says.

    >>> max_pages(30, 100), max_pages(1000, 100)
    (14, 50)
    """
    return 10 + 4 * math.ceil(limit / per_page)


def max_audio_bytes(length: str) -> int:
    """The most bytes a recording of ``length`` (the API's ``m:ss`` or ``h:mm:ss``) may have:
    1 MiB of headers and tags plus :data:`MAX_BYTES_PER_SECOND` for each second.

    >>> max_audio_bytes("0:02"), max_audio_bytes("1:00:00") // 2**30, max_audio_bytes("?")
    (2584576, 2, 461848576)
    """
    parts = length.strip().split(":")
    if 1 <= len(parts) <= 3 and all(p.isdigit() for p in parts):
        seconds = float(sum(int(p) * 60**i for i, p in enumerate(reversed(parts))))
    else:
        seconds = UNKNOWN_LENGTH_S
    return (1 << 20) + int(seconds * MAX_BYTES_PER_SECOND)


def queries(cfg: XenocantoConfig) -> list[str]:
    """The API v3 query strings the params ask for (one per species, or the raw query).

    >>> from audioclf.config.datasets import XenocantoConfig
    >>> queries(XenocantoConfig(species=("Parus major",), quality="A"))
    ['gen:Parus sp:major q:A']
    """
    grade = f" q:{cfg.quality}" if cfg.quality else ""
    if cfg.query is not None:
        return [cfg.query.strip() + grade]
    return [
        f"gen:{genus} sp:{epithet}{grade}" for genus, epithet in (s.split() for s in cfg.species)
    ]


def label_of(record: dict[str, Any]) -> str:
    """``"Genus species"`` of an API record."""
    return f"{record['gen'].capitalize()} {record['sp'].lower()}"


def prepare(data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    """Query Xeno-canto, download the selected recordings and describe them.

    Args:
        data: data params; ``data.xenocanto`` holds the query, caps and request pacing.
        seed: unused (the selection follows the API's order); every adapter takes it.
        out_dir: empty folder that receives ``audio/<Genus_species>/XC<id>.<ext>``.

    Returns:
        One entry per recording: label "Genus species", group ``XC<id>``, extras
        ``licence``, ``recordist``, ``quality``, ``url``.

    Raises:
        DownloadError: the API or a file could not be fetched (key scrubbed from the message).
    """
    cfg = data.xenocanto
    cache = Path(data.download_dir) / "xenocanto"
    throttle = Throttle(cfg.min_interval_s)
    key = os.environ.get(KEY_ENV, "")
    clips, skipped = [], []
    try:
        records = select(data, cache, throttle, key)
        failures = 0  # in a row: the server may be down
        for rec in records:
            try:
                clips.append(_download(rec, data, cache, throttle, out_dir))
                failures = 0
            except RefusedError as exc:  # withdrawn, restricted or elsewhere: skip it
                skipped.append({"path": f"XC{rec['id']}", "reason": scrub(str(exc), key)})
            except DownloadError as exc:  # too large, or failing after retries: skip it too
                skipped.append({"path": f"XC{rec['id']}", "reason": scrub(str(exc), key)})
                failures += not isinstance(exc, TooLargeError)
                if failures >= MAX_FAILURES_IN_A_ROW:
                    raise DownloadError(
                        f"{failures} recordings in a row could not be fetched (last: {exc}); "
                        f"is the server down? Rerun later: finished files are kept"
                    ) from None
    except DownloadError as exc:
        # the key scrubbed in every form (raw, percent-encoded) from URLs and echoed bodies alike;
        # not chained: the original may hold the key
        raise DownloadError(scrub(str(exc), key)) from None
    write_json(
        {"api_url": cfg.api_url, "queries": queries(cfg), "recordings": len(records)},
        out_dir / SOURCE_FILE,
    )
    return describe_all(clips, out_dir, skipped)


def select(data: DataConfig, cache: Path, throttle: Throttle, key: str) -> list[dict[str, str]]:
    """The recordings chosen by the query params, from the cache or the API.

    At most ``max_per_species`` per label and ``max_recordings`` in all, in the API's order.
    """
    cfg = data.xenocanto
    records: list[dict[str, str]] = []
    for query in queries(cfg):
        limit = cfg.max_recordings - len(records)
        if limit <= 0:
            break
        ident = hashlib.sha256(
            f"{cfg.api_url}|{query}|{cfg.max_per_species}|{limit}".encode()
        ).hexdigest()
        path = cache / "queries" / f"{ident[:16]}.json"
        if path.is_file():
            found = json.loads(path.read_text())["recordings"]
        else:
            found = _query(query, limit, data, throttle, key)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({"query": query, "recordings": found}, indent=1))
        have = {r["id"] for r in records}
        records += [r for r in found if r["id"] not in have]  # two queries may share one
    if not records:
        raise DownloadError(
            f"Xeno-canto returned no recordings for {queries(cfg)}; "
            f"check data.xenocanto.species / query / quality"
        )
    return records


def _query(
    query: str, limit: int, data: DataConfig, throttle: Throttle, key: str
) -> list[dict[str, str]]:
    cfg = data.xenocanto
    if not key:
        raise DownloadError(
            f"the Xeno-canto API needs a key: set the environment variable {KEY_ENV} "
            f"(registered users find theirs at https://xeno-canto.org/account); "
            f"never put it in params.yaml"
        )
    per_label: Counter = Counter()
    chosen: list[dict[str, str]] = []
    seen: set[str] = set()
    page, pages, bound = 1, 1, max_pages(limit, cfg.per_page)
    while page <= pages and len(chosen) < limit:
        if page > bound:
            log.warning(
                "Xeno-canto: stopped query %r after %d pages (%d recordings chosen); the server "
                "claims %d",
                query,
                bound,
                len(chosen),
                pages,
            )
            break
        params = {"query": query, "per_page": cfg.per_page, "page": page, "key": key}
        url = f"{cfg.api_url}?{urllib.parse.urlencode(params)}"
        body = fetch_json(
            url,
            policy=retry_policy(data),
            throttle=throttle,
            allowed_hosts=cfg.hosts,
            max_bytes=MAX_PAGE_BYTES,
        )
        if not isinstance(body, dict) or not isinstance(body.get("recordings"), list):
            raise DownloadError(
                f"unexpected answer from {redact(url)}: {printable(str(body)[:200])}"
            )
        try:
            pages = int(body.get("numPages", 1))
        except (TypeError, ValueError):
            raise DownloadError(
                f"unexpected numPages {body.get('numPages')!r} from {redact(url)}"
            ) from None
        for rec in body["recordings"]:
            if not isinstance(rec, dict) or str(rec.get("id", "")) in seen:
                continue  # listed on an earlier page too
            if not (
                str(rec.get("id", "")).isdigit()
                and rec.get("gen")
                and rec.get("sp")
                and rec.get("file")
            ):
                continue  # unidentified or restricted recordings have no name or file
            label = label_of(rec)
            if per_label[label] < cfg.max_per_species and len(chosen) < limit:
                per_label[label] += 1
                seen.add(str(rec["id"]))
                chosen.append({f: str(rec.get(f, "")) for f in FIELDS})
        if cfg.species and per_label and min(per_label.values()) >= cfg.max_per_species:
            break  # one species per query: it is full
        page += 1
    return chosen


def _download(
    rec: dict[str, str], data: DataConfig, cache: Path, throttle: Throttle, out_dir: Path
) -> Clip:
    url = rec["file"]
    if url.startswith("//"):  # older API answers give scheme-relative links
        url = "https:" + url
    suffix = PurePosixPath(rec["file-name"]).suffix.lower() or ".mp3"
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ".mp3"
    name = f"XC{rec['id']}{suffix}"
    cached = fetch_file(
        url,
        cache / "audio" / name,
        policy=retry_policy(data),
        throttle=throttle,
        hint="Rerun later to resume; finished files are kept in the download cache.",
        allowed_hosts=data.xenocanto.hosts,
        max_bytes=max_audio_bytes(rec.get("length", "")),
        deadline_s=data.timeout_s,
    )
    label = label_of(rec)
    dest = out_dir / "audio" / re.sub(r"[^A-Za-z0-9-]+", "_", label) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, dest)
    return Clip(
        dest,
        label=label,
        group=f"XC{rec['id']}",
        extra={
            "licence": _https(rec["lic"]),
            "recordist": rec["rec"],
            "quality": rec["q"],
            "url": _https(rec["url"]),
        },
    )


def _https(link: str) -> str:
    return "https:" + link if link.startswith("//") else link
