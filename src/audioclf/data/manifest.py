"""The manifest: one CSV schema that every dataset adapter writes.

Required columns, in this order:

============  ==============================================================
path          audio file, relative to the manifest's folder (POSIX separators)
label         class name
group         leakage unit: clips sharing a group never straddle splits
              (recording id, Freesound source, speaker...)
duration      seconds, as decoded from the file header
sample_rate   Hz, the file's own rate (resampling happens in ``features``)
channels      channel count of the file
sha256        hex digest of the file bytes
============  ==============================================================

Adapters may append extra columns (``fold``, ``text_id``, ``licence``...); readers
keep them as strings.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from audioclf.errors import MissingInputError
from audioclf.io import atomic_path

DROPPED_FILE = "unreadable.json"  # beside the manifest: files an adapter left out, with reasons
COLUMNS = ("path", "label", "group", "duration", "sample_rate", "channels", "sha256")


@dataclass(frozen=True)
class Entry:
    """One manifest row."""

    path: str
    label: str
    group: str
    duration: float
    sample_rate: int
    channels: int
    sha256: str
    extra: dict[str, str] = field(default_factory=dict, compare=False)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe(path: Path, root: Path, label: str, group: str, **extra: str) -> Entry:
    """Make an :class:`Entry` for an audio file by reading its header and hashing it.

    Raises:
        RuntimeError: if the file cannot be read as audio (soundfile's message kept).
    """
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise RuntimeError(f"cannot read audio header of {path}: {exc}") from exc
    return Entry(
        # absolute on both sides: adapters may hand an absolute path under a relative root
        path=Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix(),
        label=label,
        group=group,
        duration=round(info.frames / info.samplerate, 6),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        sha256=sha256_file(path),
        extra={k: str(v) for k, v in extra.items()},
    )


def write_manifest(entries: list[Entry], path: str | Path) -> None:
    """Write ``entries`` atomically; extra columns are the union of the entries' extras."""
    extra_cols = sorted({k for e in entries for k in e.extra})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*COLUMNS, *extra_cols])
        for e in entries:
            writer.writerow(
                [
                    e.path,
                    e.label,
                    e.group,
                    e.duration,
                    e.sample_rate,
                    e.channels,
                    e.sha256,
                    *(e.extra.get(c, "") for c in extra_cols),
                ]
            )


def read_manifest(path: str | Path) -> list[Entry]:
    """Read a manifest, checking that the required columns are present.

    Raises:
        MissingInputError: if ``path`` does not exist.
        ValueError: naming the missing columns or the bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(
            f"manifest not found: {path} (run the download stage: dvc repro download)"
        )
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"manifest {path} lacks columns {missing}; required: {list(COLUMNS)}")
        entries = []
        for lineno, row in enumerate(reader, start=2):
            try:
                entries.append(
                    Entry(
                        path=row["path"],
                        label=row["label"],
                        group=row["group"],
                        duration=float(row["duration"]),
                        sample_rate=int(row["sample_rate"]),
                        channels=int(row["channels"]),
                        sha256=row["sha256"],
                        extra={k: v for k, v in row.items() if k not in COLUMNS},
                    )
                )
            except (TypeError, ValueError) as exc:
                raise ValueError(f"manifest {path} line {lineno}: {exc}") from exc
    return entries


def read_dropped(manifest: str | Path) -> list[dict]:
    """The files a dataset adapter left out of ``manifest`` (``unreadable.json`` beside it), with reasons."""
    path = Path(manifest).with_name(DROPPED_FILE)
    return json.loads(path.read_text()) if path.is_file() else []
