"""What the archive-based adapters share: finding the archive (``data.archive`` or the
download cache), reading it whether zipped or extracted, and turning the copied audio
into manifest entries while listing (not failing on) files that do not decode.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from audioclf.data.datasets.fetch import RetryPolicy, fetch_file, verify_sha256
from audioclf.data.manifest import Entry, describe, sha256_file
from audioclf.errors import MissingInputError, UserError
from audioclf.io import project_path, write_json

if TYPE_CHECKING:
    from audioclf.config.data import DataConfig

log = logging.getLogger(__name__)

UNREADABLE_FILE = "unreadable.json"
SOURCE_FILE = "source.json"


class DatasetError(UserError, ValueError):
    """An archive or folder that is not the dataset the params name, or holds nothing usable."""


def retry_policy(data: DataConfig) -> RetryPolicy:
    return RetryPolicy(retries=data.retries, backoff_s=data.backoff_s, timeout_s=data.timeout_s)


def manual_hint(url: str) -> str:
    """How to supply an archive by hand when it cannot be downloaded here."""
    return (
        f"To supply it by hand, download {url} on a machine with internet access, copy it here "
        f"and set data.archive: <path of the zip, or of the folder it extracts to> "
        f"(e.g. dvc exp run -S data.archive=/path/to/archive.zip)."
    )


class Archive:
    """Read-only view of a dataset archive: a zip file or an already-extracted folder.

    Member names are POSIX paths relative to the archive root; names that would escape
    it (absolute, or with ``..``) are dropped, so copying a member cannot write outside
    its destination.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            names = (
                p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
            )
        elif zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            names = (i.filename for i in self._zip.infolist() if not i.is_dir())
        else:
            raise DatasetError(
                f"{self.path} is neither a folder nor a zip file; data.archive must "
                f"point at the dataset's zip or at the folder it extracts to"
            )
        self.names = sorted(n for n in names if _is_safe(n))

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        if self._zip is not None:
            self._zip.close()

    def read_text(self, name: str) -> str:
        if self._zip is not None:
            return self._zip.read(name).decode("utf-8-sig")
        return (self.path / name).read_text(encoding="utf-8-sig")

    def copy(self, name: str, dest: Path) -> Path:
        """Copy member ``name`` byte for byte to ``dest`` (parents created)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self._zip is None:
            shutil.copyfile(self.path / name, dest)
        else:
            try:
                with self._zip.open(name) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except zipfile.BadZipFile as exc:  # zipfile checks each member's CRC as it reads
                raise DatasetError(
                    f"{self.path} is corrupt ({exc}); download it again (delete it from "
                    f"the download cache) or supply a good copy with data.archive"
                ) from exc
        return dest


def _is_safe(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and ":" not in parts[0]


def open_archive(data: DataConfig, dataset: str, url: str, sha256: str | None) -> Archive:
    """The archive of ``dataset``: ``data.archive`` if set, else ``url`` via the download cache.

    Args:
        data: validated data params (``archive``, ``download_dir``, retry settings).
        dataset: name of the cache sub-folder (``esc50``...).
        url: where the official archive is downloaded from.
        sha256: expected digest of the zip (None: unverified); a supplied folder is not hashed.

    Raises:
        MissingInputError: ``data.archive`` does not exist.
        DownloadError: offline or refused; the message names the URL and ``data.archive``.
        ChecksumError: the zip is not the expected one.
    """
    if data.archive is not None:
        path = project_path(data.archive)
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
        return Archive(path)
    name = PurePosixPath(url.split("?")[0]).name or "archive.zip"
    dest = project_path(data.download_dir) / dataset / name
    fetch_file(url, dest, policy=retry_policy(data), sha256=sha256, hint=manual_hint(url))
    try:
        return Archive(dest)
    except ValueError:  # e.g. an HTML error page, or a cut-off file the server gave no length for
        raise DatasetError(
            f"the download of {url} at {dest} is not a zip file; delete it to download "
            f"again. {manual_hint(url)}"
        ) from None


def record_source(out_dir: Path, archive: Archive, url: str | None) -> None:
    """Write ``source.json``: where the files came from, and the zip's digest for pinning."""
    digest = sha256_file(archive.path) if archive.path.is_file() else None
    write_json(
        {"url": url, "archive": str(archive.path), "archive_sha256": digest}, out_dir / SOURCE_FILE
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
    unreadable = list(skipped)
    entries = []
    for clip in clips:
        try:
            entries.append(describe(clip.path, out_dir, clip.label, clip.group, **clip.extra))
        except RuntimeError as exc:
            unreadable.append(
                {"path": clip.path.relative_to(out_dir).as_posix(), "reason": str(exc)}
            )
    write_json(unreadable, out_dir / UNREADABLE_FILE)
    if unreadable:
        log.warning(
            "%d files left out of the manifest; see %s beside it for the reasons (first: %s: %s)",
            len(unreadable),
            UNREADABLE_FILE,
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
