"""``esc50``: ESC-50, 2000 five-second environmental recordings in 50 classes.

Piczak, "ESC: Dataset for Environmental Sound Classification", ACM MM 2015;
https://github.com/karolpiczak/ESC-50, licence CC BY-NC 3.0 (clips from Freesound).
The archive holds ``ESC-50-master/meta/esc50.csv`` (columns ``filename, fold,
target, category, esc10, src_file, take``) and ``ESC-50-master/audio/*.wav``
(44.1 kHz mono, named ``{fold}-{src_file}-{take}-{target}.wav``).

Several clips are cut from one Freesound recording (``src_file``); they share its
microphone and scene, so ``src_file`` is the group and such clips never straddle
splits. The official 5-fold partition, which already keeps sources within a fold, is
kept as the ``fold`` column.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from audioclf.data.datasets.source import (
    Clip,
    DatasetError,
    describe_all,
    open_archive,
    record_source,
)
from audioclf.data.manifest import Entry

if TYPE_CHECKING:
    from audioclf.config.data import DataConfig

# GitHub builds master.zip on request: its bytes change whenever master moves or the
# archiver changes, and it could not be fetched where this was written, so no digest
# is pinned. Pin one with data.esc50.sha256 (source.json records the zip's digest).
PINNED_SHA256 = None
META = "meta/esc50.csv"
REQUIRED = ("filename", "fold", "category", "esc10", "src_file")


def prepare(data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    """Copy the ESC-50 clips into ``out_dir/audio`` and describe them.

    Args:
        data: data params; ``data.esc50`` selects the URL, checksum and ESC-10 subset.
        seed: unused (the dataset is fixed); part of every adapter's signature.
        out_dir: empty folder that receives ``audio/``, ``source.json``, ``unreadable.json``.

    Returns:
        One entry per clip: label = category, group = Freesound source, extra ``fold``.
    """
    cfg = data.esc50
    with open_archive(data, "esc50", cfg.url, cfg.sha256 or PINNED_SHA256, cfg.hosts) as archive:
        root = _root(archive.names, archive.path)
        rows = _read_meta(archive.read_text(root + META), archive.path)
        members = set(archive.names)
        clips, skipped = [], []
        for row in rows:
            if cfg.esc10 and row["esc10"] != "True":
                continue
            member = f"{root}audio/{row['filename']}"
            if member not in members:
                skipped.append(
                    {
                        "path": f"audio/{row['filename']}",
                        "reason": f"listed in {META} but missing from {archive.path}",
                    }
                )
                continue
            dest = archive.extract(member, out_dir / "audio", row["filename"])
            if dest is not None:
                extra = {"fold": row["fold"]}
                clips.append(Clip(dest, label=row["category"], group=row["src_file"], extra=extra))
        record_source(out_dir, archive, cfg.url)
    return describe_all(clips, out_dir, skipped + archive.refused)


def _root(names: list[str], archive: Path) -> str:
    """Prefix of ``meta/esc50.csv`` inside the archive (``ESC-50-master/`` or empty)."""
    found = [n[: -len(META)] for n in names if n == META or n.endswith("/" + META)]
    if not found:
        raise DatasetError(
            f"{archive} has no {META}: is it the ESC-50 archive (ESC-50-master/meta/esc50.csv "
            f"and ESC-50-master/audio/)? Check data.archive or data.esc50.url"
        )
    return min(found, key=len)


def _read_meta(text: str, archive: Path) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(
            f"{META} in {archive} lacks columns {missing}; expected {list(REQUIRED)}"
        )
    return list(reader)
