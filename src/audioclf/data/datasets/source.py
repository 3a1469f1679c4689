"""What the archive-based adapters share: finding the archive (``data.archive`` or the
download cache; read through :mod:`audioclf.data.datasets.archive`), and turning the
copied audio into manifest entries while listing (not failing on) files that do not decode.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from audioclf.data.datasets.archive import Archive, DatasetError, Limits
from audioclf.data.datasets.fetch import RetryPolicy, fetch_file, verify_sha256
from audioclf.data.manifest import DROPPED_FILE, Entry, describe, sha256_file
from audioclf.errors import MissingInputError, printable
from audioclf.io import write_json

if TYPE_CHECKING:
    from audioclf.config.data import DataConfig

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"


def retry_policy(data: DataConfig) -> RetryPolicy:
    return RetryPolicy(retries=data.retries, backoff_s=data.backoff_s, timeout_s=data.timeout_s)


def manual_hint(url: str) -> str:
    """How to supply an archive by hand when it cannot be downloaded here."""
    return (
        f"To supply it by hand, download {url} on a machine with internet access, copy it here "
        f"and set data.archive: <path of the zip, or of the folder it extracts to> "
        f"(e.g. dvc exp run -S data.archive=/path/to/archive.zip)."
    )


def limits(data: DataConfig) -> Limits:
    """What an archive may expand to, from ``data.max_archive_gb`` and ``data.max_compression_ratio``."""
    return Limits(max_bytes=int(data.max_archive_gb * 2**30), max_ratio=data.max_compression_ratio)


def open_archive(
    data: DataConfig, dataset: str, url: str, sha256: str | None, hosts: tuple[str, ...]
) -> Archive:
    """The archive of ``dataset``: ``data.archive`` if set, else ``url`` via the download cache.

    Args:
        data: validated data params (``archive``, ``download_dir``, retry settings).
        dataset: name of the cache sub-folder (``esc50``...).
        url: where the official archive is downloaded from.
        sha256: expected digest of the zip (None: unverified); a supplied folder is not hashed.
        hosts: the only hosts the download and its redirects may name.

    Raises:
        MissingInputError: ``data.archive`` does not exist.
        DownloadError: offline or refused; the message names the URL and ``data.archive``.
        ChecksumError: the zip is not the expected one.
    """
    if data.archive is not None:
        path = Path(data.archive)
        if not path.exists():
            raise MissingInputError(
                f"params: 'data.archive' is {data.archive!r}, but {path} does not exist; "
                f"point it at the {dataset} zip or extracted folder, or set it to null "
                f"to download {url}"
            )
        if path.is_file():
            verify_sha256(
                path, sha256, f"data.archive for {dataset}; expected the archive from {url}"
            )
        return Archive(path, limits(data))
    name = PurePosixPath(url.split("?")[0]).name or "archive.zip"
    dest = Path(data.download_dir) / dataset / name
    fetch_file(
        url,
        dest,
        policy=retry_policy(data),
        sha256=sha256,
        hint=manual_hint(url),
        allowed_hosts=hosts,
        max_bytes=int(data.max_archive_gb * 1e9),  # a zip is no larger than what it unpacks to
    )
    try:
        return Archive(dest, limits(data))
    except ValueError:  # e.g. an HTML error page, or a cut-off file the server gave no length for
        raise DatasetError(
            f"the download of {url} at {dest} is not a zip file; delete it to download "
            f"again. {manual_hint(url)}"
        ) from None


def record_source(
    out_dir: Path, archive: Archive, url: str | None, ignored: list[dict[str, str]] = ()
) -> None:
    """Write ``source.json``: where the files came from, the zip's digest for pinning, and the
    members left aside as not audio (``ignored``: ``{"path", "reason"}``)."""
    digest = sha256_file(archive.path) if archive.path.is_file() else None
    write_json(
        {
            "url": url,
            "archive": str(archive.path),
            "archive_sha256": digest,
            "ignored": list(ignored),
        },
        out_dir / SOURCE_FILE,
    )


@dataclass(frozen=True)
class Clip:
    """An audio file copied into the output folder, waiting to be described."""

    path: Path
    label: str
    group: str
    extra: dict[str, str] = field(default_factory=dict)


def describe_all(clips: Iterable[Clip], out_dir: Path, skipped: Iterable[dict] = ()) -> list[Entry]:
    """Manifest entries for ``clips``; files that do not decode are listed, not fatal.

    ``skipped`` (``{"path", "reason"}`` dicts the adapter already set aside, e.g. badly
    named files) and every file whose header cannot be read go to
    ``out_dir/unreadable.json``, with one warning naming how many and where.

    Raises:
        RuntimeError: if no file at all could be described.
    """
    unreadable = [{"path": printable(s["path"]), "reason": printable(s["reason"])} for s in skipped]
    entries = []
    for clip in clips:
        try:
            entries.append(describe(clip.path, out_dir, clip.label, clip.group, **clip.extra))
        except RuntimeError as exc:
            # relative to the output: a reason must not name the temporary folder it was written in
            reason = str(exc).replace(f"{out_dir}{os.sep}", "")
            unreadable.append(
                {
                    "path": Path(os.path.abspath(clip.path))
                    .relative_to(os.path.abspath(out_dir))
                    .as_posix(),
                    "reason": printable(reason),
                }
            )
    write_json(unreadable, out_dir / DROPPED_FILE)
    if unreadable:
        log.warning(
            "%d files left out of the manifest; see %s beside it for the reasons (first: %s: %s)",
            len(unreadable),
            DROPPED_FILE,
            unreadable[0]["path"],
            unreadable[0]["reason"],
        )
    if not entries:
        first = (
            "; ".join(f"{u['path']}: {u['reason']}" for u in unreadable[:3])
            or "no audio files found"
        )
        raise DatasetError(f"no usable audio files ({first})")
    return entries
