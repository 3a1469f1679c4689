"""``folder``: your own audio, from a local folder or zip named by ``data.archive``.

Layouts (``data.folder`` params; a single folder wrapping everything, as zips often
have, is looked through):

* one sub-folder per class: ``dog/001.wav``, ``cat/kitten.flac`` -> labels ``dog``, ``cat``;
* labels in the file names: ``label_regex: '^(?P<label>\\d+)_'`` reads ``7`` from
  ``7_jackson_32.wav`` (free-spoken-digit style);
* a table: ``csv: labels.csv`` with ``path_column`` (relative to the CSV's folder),
  ``label_column`` and optionally ``group_column``; other columns are kept as extra
  manifest columns.

The group (the leakage unit) is ``group_column``, else what ``group_regex`` captures,
e.g. the speaker with ``'^\\d+_(?P<group>[a-z]+)_\\d+'`` on ``7_jackson_32.wav``, else
the file itself (its path without extension): set one whenever several files share a
recording, speaker or session, or the test scores will be inflated.

Only audio files (``data.folder.extensions``) decide the wrapper folder and the classes: a
``README.txt`` beside ``top/<class>/`` changes nothing. Hidden files (``.DS_Store``,
``__MACOSX/``) and files that are not audio are listed under ``ignored`` in ``source.json``;
audio files left out (refused, unlabelled, unreadable) are listed in ``unreadable.json`` by
their path inside ``data.archive`` (or, once copied, inside the output folder).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from audioclf.config import ParamsError
from audioclf.data.datasets.archive import Archive, DatasetError
from audioclf.data.datasets.source import Clip, describe_all, limits, record_source
from audioclf.data.manifest import COLUMNS, Entry
from audioclf.errors import MissingInputError

if TYPE_CHECKING:
    from audioclf.config.data import DataConfig
    from audioclf.config.datasets import FolderConfig


def prepare(data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    """Copy the audio of ``data.archive`` into ``out_dir/audio`` (same relative paths) and describe it.

    Args:
        data: data params; ``data.archive`` is required, ``data.folder`` says how to label.
        seed: unused; part of every adapter's signature.
        out_dir: empty folder that receives ``audio/``, ``source.json``, ``unreadable.json``.

    Returns:
        One entry per labelled audio file; unlabelled ones are listed in ``unreadable.json``.
    """
    cfg = data.folder
    if data.archive is None:
        raise ParamsError(
            "params: 'data.archive' is null, but dataset=folder needs it: set it to your "
            "folder of class sub-folders or to a zip of it (see docs/datasets.md)"
        )
    path = Path(data.archive)
    if not path.exists():
        raise MissingInputError(
            f"params: 'data.archive' is {data.archive!r}, but {path} does not exist"
        )
    with Archive(path, limits(data)) as archive:
        root = _wrapper(archive.names, cfg)
        rows, skipped, table = (
            _table(archive, root, cfg) if cfg.csv else (_tree(archive.names, root, cfg), [], None)
        )
        named = {row[0] for row in rows} if table else None
        ignored = _ignored([n for n in archive.names if n != table], cfg, named)
        clips = []
        for member, label, group, extra in rows:
            rel = member[len(root) :]
            label = label or _from_name(cfg.label_regex, "label", rel) or _class_folder(rel, cfg)
            if not label:
                skipped.append({"path": member, "reason": _why_unlabelled(cfg)})
                continue
            group = group or _from_name(cfg.group_regex, "group", rel)
            if group is None and cfg.group_regex:
                skipped.append(
                    {
                        "path": member,
                        "reason": f"name does not match data.folder.group_regex "
                        f"{cfg.group_regex!r}",
                    }
                )
                continue
            dest = archive.extract(member, out_dir / "audio", rel)
            if dest is None:
                continue
            clips.append(
                Clip(
                    dest,
                    label=label,
                    group=group or str(PurePosixPath(rel).with_suffix("")),
                    extra=extra,
                )
            )
        record_source(out_dir, archive, url=None, ignored=ignored)
    return describe_all(clips, out_dir, skipped + archive.refused)


Row = tuple[str, str | None, str | None, dict[str, str]]  # member, label, group, extra


def _tree(names: list[str], root: str, cfg: FolderConfig) -> list[Row]:
    """Every audio file under ``root``; labels and groups come from names later."""
    return [(n, None, None, {}) for n in names if n.startswith(root) and _is_audio(n, cfg)]


def _table(archive: Archive, root: str, cfg: FolderConfig) -> tuple[list[Row], list[dict], str]:
    """Rows of ``cfg.csv`` resolved to archive members, the rows whose file is missing, and the
    table's own member name."""
    table = _normalise(PurePosixPath(root) / cfg.csv)
    if table not in archive.names:
        table = _normalise(PurePosixPath(cfg.csv))
    if table not in archive.names:
        raise MissingInputError(
            f"params: 'data.folder.csv' is {cfg.csv!r}, but {archive.path} holds no "
            f"such file; give its path relative to the archive's top folder"
        )
    reader = csv.DictReader(io.StringIO(archive.read_text(table)))
    columns = [c for c in (cfg.path_column, cfg.label_column, cfg.group_column) if c]
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(
            f"params: data.folder names columns {missing} that {cfg.csv} lacks; "
            f"its columns are {reader.fieldnames}"
        )
    base = PurePosixPath(table).parent
    members = set(archive.names)
    extra_cols = [c for c in reader.fieldnames if c not in columns and c not in COLUMNS]
    rows: list[Row] = []
    skipped: list[dict] = []
    for line, row in enumerate(reader, start=2):
        member = _normalise(base / row[cfg.path_column])
        if member not in members or not member.startswith(root):
            skipped.append(
                {
                    "path": row[cfg.path_column],
                    "reason": f"{cfg.csv} line {line} lists a file that {archive.path} lacks",
                }
            )
            continue
        label = row[cfg.label_column] if cfg.label_column else None
        group = (row[cfg.group_column] or None) if cfg.group_column else None
        rows.append((member, label, group, {c: row[c] for c in extra_cols}))
    return rows, skipped, table


def _ignored(
    names: list[str], cfg: FolderConfig, named: set[str] | None = None
) -> list[dict[str, str]]:
    """The members left aside, each with its reason: those that are not audio files, and where
    a table names the files (``named``), the audio files it does not name."""
    ignored = []
    for n in names:
        if _hidden(n):
            ignored.append({"path": n, "reason": "a hidden file or folder"})
        elif not _is_audio(n, cfg):
            why = f"not audio (data.folder.extensions: {', '.join(cfg.extensions)})"
            ignored.append({"path": n, "reason": why})
        elif named is not None and n not in named:
            ignored.append({"path": n, "reason": f"an audio file that {cfg.csv} does not name"})
    return ignored


def _wrapper(names: list[str], cfg: FolderConfig) -> str:
    """``"top/"`` if every audio file sits under one folder ``top``, else ``""``: a stray
    ``README.txt`` beside ``top/`` does not make ``top`` a class."""
    # a table is part of the dataset: with one, every visible file counts
    visible = [n for n in names if _is_audio(n, cfg) or (cfg.csv and not _hidden(n))]
    tops = {n.split("/", 1)[0] for n in visible}
    if len(tops) == 1 and all("/" in n for n in visible):
        return tops.pop() + "/"
    return ""


def _hidden(name: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(name).parts)


def _is_audio(name: str, cfg: FolderConfig) -> bool:
    return not _hidden(name) and PurePosixPath(name).suffix.lower() in {
        e.lower() for e in cfg.extensions
    }


def _normalise(path: PurePosixPath) -> str:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


def _from_name(pattern: str | None, group: str, rel: str) -> str | None:
    if pattern is None:
        return None
    m = re.search(pattern, PurePosixPath(rel).name)
    return m[group] if m and m[group] else None


def _class_folder(rel: str, cfg: FolderConfig) -> str | None:
    if cfg.label_column or cfg.label_regex:
        return None  # the configured source of labels did not give one: no silent fallback
    parts = PurePosixPath(rel).parts
    return parts[0] if len(parts) > 1 else None


def _why_unlabelled(cfg: FolderConfig) -> str:
    if cfg.label_column:
        return f"empty {cfg.label_column!r} cell in {cfg.csv}"
    if cfg.label_regex:
        return f"name does not match data.folder.label_regex {cfg.label_regex!r}"
    return "not inside a class sub-folder; move it into one or set data.folder.label_regex"
