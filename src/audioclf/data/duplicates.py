"""One group for copies: files of identical or near-identical audio merged into one group before
splitting (``split.merge_duplicates``), so a grouped split keeps every copy on one side.

A dataset that publishes one recording twice under two source ids (it happens in real
ones) otherwise puts the copies in different folds, which the leakage audit then refuses.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from audioclf.data.fingerprint import fingerprint_files, near_duplicates
from audioclf.data.manifest import Entry

log = logging.getLogger(__name__)


def merge_duplicate_groups(
    entries: list[Entry], audio_root: Path, *, max_ber: float, max_seconds: float
) -> tuple[list[Entry], list[list[str]]]:
    """``entries`` with the groups of exact and near duplicates merged (each merged group takes the
    name of its first group in sorted order), and the groups merged, one sorted list each.

    Args:
        entries: the manifest.
        audio_root: what the manifest paths are relative to.
        max_ber, max_seconds: as for the audit (``audit.max_ber``, ``audit.max_file_seconds``).
    """
    prints, _ = fingerprint_files(entries, audio_root, max_seconds)
    by_hash: dict[str, list[str]] = {}
    for path, p in prints.items():
        by_hash.setdefault(p.sample_hash, []).append(path)
    pairs = [(paths[0], other) for paths in by_hash.values() for other in paths[1:]]
    pairs += [
        (m["a"], m["b"])
        for m in near_duplicates({k: p.words for k, p in prints.items()}, max_ber=max_ber)
    ]
    group_of = {e.path: e.group for e in entries}
    parent = {g: g for g in group_of.values()}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for a, b in pairs:
        ra, rb = sorted((root(group_of[a]), root(group_of[b])))
        parent[rb] = ra
    merged: dict[str, set[str]] = {}
    for g in parent:
        merged.setdefault(root(g), set()).add(g)
    sets = sorted(sorted(s) for s in merged.values() if len(s) > 1)
    if sets:
        log.info(
            "split: %d groups of copies merged (%d groups into %d)",
            len(sets),
            sum(map(len, sets)),
            len(sets),
        )
    return [dataclasses.replace(e, group=root(e.group)) for e in entries], sets
