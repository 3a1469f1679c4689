"""Reading a dataset archive (a zip, or the folder it extracts to) without trusting it.

Every adapter takes its files out through :meth:`Archive.extract`, the one routine that
writes: a member's final location is resolved and must lie inside the destination
folder (names that are absolute, climb out with ``..``, or become absolute once a wrapper
folder is stripped, like ``top//etc/x``, are refused); two members landing on one path
are refused after the first; zip symlinks, and folder symlinks that lead out of the
folder, are never followed; names that are not plain relative paths (``.`` or ``..`` parts,
empty parts, backslashes) are refused rather than normalised. Zip members whose data
overlaps another member's (read from the central directory: a member's local header and
compressed data must end before the next one begins) are refused: such members share their
compressed bytes, so every one passes the ratio check while together they expand without
bound (Python's ``zipfile`` checks this only from 3.12). The uncompressed bytes taken out are
capped by ``data.max_archive_gb`` and, for a zip, by ``data.max_compression_ratio`` times the
zip's own size (a whole-archive ratio), counted while copying and checked before each block
is written; every zip member's own ratio is capped too. Refused members are listed in
:attr:`Archive.refused` with their reason (the adapters add them to ``unreadable.json``),
never written.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from audioclf.errors import MissingInputError, UserError

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # in a name: a terminal escape, a line break

CHUNK = 1 << 20
LOCAL_HEADER = struct.calcsize(zipfile.structFileHeader)  # 30 bytes before a member's name


class DatasetError(UserError, ValueError):
    """An archive or folder that is not the dataset the params name, or holds nothing usable."""


@dataclass(frozen=True)
class Limits:
    """How much an archive may expand to: total bytes taken out, and the ratio of any zip member
    and of a whole zip (bytes taken out per byte of the zip)."""

    max_bytes: int = 100 << 30
    max_ratio: float = 100.0

    def cap(self, path: Path) -> int:
        """Bytes the archive at ``path`` may give: ``max_bytes``, and for a zip at most
        ``max_ratio`` times its size (a folder is already on disk at its full size)."""
        if path.is_dir():
            return self.max_bytes
        return min(self.max_bytes, int(self.max_ratio * path.stat().st_size))


def inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` resolved, or None if it lies outside ``root`` (or names ``root`` itself).

    >>> [inside(Path("/data/raw"), r) for r in ("a/b.wav", "/etc/passwd", "../x.wav", "a/../../x")]
    [PosixPath('/data/raw/a/b.wav'), None, None, None]
    """
    base = Path(os.path.abspath(root))
    dest = Path(os.path.abspath(base / rel))
    return dest if dest != base and dest.is_relative_to(base) else None


def plain(name: str) -> bool:
    r"""Whether ``name`` is a plain relative POSIX path: no empty, ``.`` or ``..`` part, no
    backslash (a Windows separator that another tool may follow).

    >>> [plain(n) for n in ("a/b.wav", "./a.wav", "a/../b.wav", "a//b.wav", "..\\x.wav")]
    [True, False, False, False, False]
    """
    return "\\" not in name and all(p not in ("", ".", "..") for p in name.split("/"))


class Archive:
    """Read-only view of a dataset archive: a zip file or an already-extracted folder.

    ``names`` are POSIX paths relative to the archive root of the members that may be
    read; ``refused`` lists the others (``{"path", "reason"}``).
    """

    def __init__(self, path: Path, limits: Limits = Limits()):
        self.path, self.limits = Path(path), limits
        self.refused: list[dict[str, str]] = []
        self._zip: zipfile.ZipFile | None = None
        self._written: set[Path] = set()
        self._bytes = 0
        self.cap = limits.cap(self.path)
        if self.path.is_dir():
            names = self._folder_members()
        elif zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            names = self._zip_members()
        else:
            raise DatasetError(
                f"{self.path} is neither a folder nor a zip file; data.archive must "
                f"point at the dataset's zip or at the folder it extracts to"
            )
        self.names = sorted(names)

    def _refuse(self, name: str, reason: str) -> None:
        # a name with control characters is listed with them escaped (\x1b), never raw
        shown = ascii(name)[1:-1] if CONTROL_CHARS.search(name) else name
        self.refused.append({"path": shown, "reason": f"refused from {self.path.name}: {reason}"})

    def _folder_members(self) -> list[str]:
        names, root = [], self.path.resolve()
        for folder, dirs, files in os.walk(self.path):  # never descends into linked folders
            for d in [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                self._refuse(
                    Path(folder, d).relative_to(self.path).as_posix(), "a symlinked folder"
                )
            for f in files:
                full = Path(folder, f)
                name = full.relative_to(self.path).as_posix()
                if CONTROL_CHARS.search(name):
                    self._refuse(name, "its name holds control characters (a terminal escape?)")
                elif full.is_symlink() and not full.resolve().is_relative_to(root):
                    self._refuse(name, f"a symlink to {os.readlink(full)}, outside the folder")
                elif full.is_file():
                    names.append(name)
        return names

    def _zip_members(self) -> list[str]:
        names, seen, total = [], set(), 0
        overlapping = self._overlapping()
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            name, mode = info.filename, info.external_attr >> 16
            if stat.S_ISLNK(mode):
                self._refuse(name, "a symlink member")
            elif inside(Path("/x"), name) is None or not PurePosixPath(name).parts:
                self._refuse(name, "its name points outside the archive")
            elif CONTROL_CHARS.search(name):
                self._refuse(name, "its name holds control characters (a terminal escape?)")
            elif not plain(name):
                self._refuse(
                    name, "its name is not a plain relative path ('.', '..', '' parts or '\\')"
                )
            elif info in overlapping:
                self._refuse(
                    name,
                    "its data overlaps the next member's (members that share compressed "
                    "bytes: a zip bomb?)",
                )
            elif name in seen:
                self._refuse(name, "a second member of the same name")
            elif info.file_size > self.limits.max_ratio * max(info.compress_size, 1):
                self._refuse(
                    name,
                    f"it expands {info.file_size / max(info.compress_size, 1):.0f}-fold, above "
                    f"data.max_compression_ratio={self.limits.max_ratio:g} (a zip bomb?)",
                )
            else:
                seen.add(name)
                names.append(name)
                total += info.file_size
        if total > self.cap:
            raise DatasetError(f"{self.path} expands to {total / 2**30:.2f} GiB, {self._above()}")
        return names

    def _overlapping(self) -> set[zipfile.ZipInfo]:
        """Members whose local header and compressed data run into the next member's header (or
        into the central directory): the least a member occupies is its 30-byte header, its name
        and its compressed data, wherever the extra fields and data descriptor put the rest."""
        infos = sorted(self._zip.infolist(), key=lambda i: i.header_offset)
        ends = [i.header_offset for i in infos[1:]] + [self._zip.start_dir]
        return {
            info
            for info, end in zip(infos, ends, strict=True)
            if info.header_offset
            + LOCAL_HEADER
            + len(info.orig_filename.encode())
            + info.compress_size
            > end
        }

    def _above(self) -> str:
        """Which cap was passed, and how to raise it."""
        if self.cap < self.limits.max_bytes:
            return (
                f"above data.max_compression_ratio={self.limits.max_ratio:g} times the zip's "
                f"{self.path.stat().st_size:,} bytes (a zip bomb?); raise "
                f"data.max_compression_ratio if it is genuine"
            )
        return (
            f"above data.max_archive_gb={self.limits.max_bytes / 2**30:g}; raise "
            f"data.max_archive_gb if it is genuine"
        )

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        if self._zip is not None:
            self._zip.close()

    def read_text(self, name: str) -> str:
        if self._zip is not None:
            return self._zip.read(name).decode("utf-8-sig")
        return (self.path / name).read_text(encoding="utf-8-sig")

    def extract(self, name: str, root: Path, rel: str) -> Path | None:
        """Copy member ``name`` byte for byte to ``root / rel``; None (and a reason in :attr:`refused`)
        if that lies outside ``root`` or another member was already written there.

        Raises:
            DatasetError: the bytes taken out exceed ``data.max_archive_gb``, or the zip is corrupt.
        """
        dest = inside(root, rel)
        if dest is None:
            self._refuse(name, f"its destination {rel!r} lies outside {root.name}/")
            return None
        if dest in self._written:
            self._refuse(name, f"a second member for {rel!r}")
            return None
        self._written.add(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._open(name) as src, open(dest, "wb") as dst:
                while block := src.read(CHUNK):
                    self._bytes += len(block)
                    if self._bytes > self.cap:
                        raise DatasetError(
                            f"{self.path} gave more than {self.cap:,} bytes, {self._above()}"
                        )
                    dst.write(block)
        except zipfile.BadZipFile as exc:  # zipfile checks each member's CRC as it reads
            raise DatasetError(
                f"{self.path} is corrupt ({exc}); download it again (delete it from "
                f"the download cache) or supply a good copy with data.archive"
            ) from exc
        return dest

    def _open(self, name: str):
        return self._zip.open(name) if self._zip is not None else open(self.path / name, "rb")


def require_source(path: Path, archive: str) -> dict:
    """:func:`fingerprint_source` of ``data.archive`` (``archive`` as written, found at ``path``).

    Raises:
        MissingInputError: nothing is there. Without this, a dataset that reads no archive (the
            synthetic one) would go on and train on data the user did not mean.
    """
    found = fingerprint_source(path)
    if found["kind"] == "missing":
        raise MissingInputError(
            f"params: 'data.archive' is {archive!r}, but {path} does not exist: point it at the "
            "dataset's zip or extracted folder (your own audio: with dataset: folder), or set it "
            "to null (the synthetic dataset and downloads read no archive)"
        )
    return found


def fingerprint_source(path: Path) -> dict:
    """What identifies a local dataset copy: a zip's SHA-256 digest, or a folder's files with their
    sizes and modification times (hashing a folder's every byte on every run would cost minutes on
    a large dataset; a file rewritten in place with the same size and time is not noticed).

    Returns:
        ``{"kind": "zip" | "folder" | "missing", "digest", "files"}``.
    """
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
        return {"kind": "zip", "digest": digest.hexdigest(), "files": 1}
    if not path.is_dir():
        return {"kind": "missing", "digest": None, "files": 0}  # require_source refuses it
    digest, files = hashlib.sha256(), 0
    for folder, dirs, names in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(names):
            full = Path(folder, name)
            st = full.stat() if full.exists() else None
            entry = (
                full.relative_to(path).as_posix(),
                st.st_size if st else -1,
                st.st_mtime_ns if st else -1,
            )
            digest.update(repr(entry).encode())
            files += 1
    return {"kind": "folder", "digest": digest.hexdigest(), "files": files}
