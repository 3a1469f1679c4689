"""Grouped, stratified train/val/test splits.

All clips of a group (recording, source file, speaker) go to one split; within that
constraint each class is spread over the splits as close to the target fractions as
the groups allow.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from audioclf.manifest import Entry

SPLITS = ("train", "val", "test")


class LeakageError(ValueError):
    """A group appears in more than one split."""


def grouped_split(entries: list[Entry], fractions: dict[str, float], seed: int, *,
                  leaky: bool = False) -> dict[str, list[Entry]]:
    """Assign whole groups to splits, stratified by label.

    Groups are placed rarest-label first; each goes to the split that most needs its
    labels, need being the shortfall against the target count relative to that target,
    so even a class with three groups gets one in each split.

    Args:
        entries: manifest rows.
        fractions: split name -> fraction, summing to 1.
        seed: breaks ties between equally needy groups reproducibly.
        leaky: ignore groups (every clip its own group). Only for demonstrating how
            much a leaky split inflates scores; never for reporting results.

    Returns:
        split name -> entries, each list in manifest order.
    """
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    key = (lambda e: e.path) if leaky else (lambda e: e.group)
    groups: dict[str, Counter] = defaultdict(Counter)
    for e in entries:
        groups[key(e)][e.label] += 1
    label_total = Counter(e.label for e in entries)
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    tiebreak = dict(zip(names, rng.permutation(len(names))))
    # rarest label first, then larger groups first (they are hardest to place late)
    order = sorted(names, key=lambda g: (min(label_total[lab] for lab in groups[g]),
                                         -sum(groups[g].values()), tiebreak[g]))
    splits = list(fractions)
    target = {s: {lab: fractions[s] * n for lab, n in label_total.items()} for s in splits}
    have = {s: Counter() for s in splits}
    size_target = {s: fractions[s] * len(entries) for s in splits}
    size = Counter()
    assign = {}
    for g in order:
        def need(s):
            by_label = sum(n * (target[s][lab] - have[s][lab]) / target[s][lab] for lab, n in groups[g].items())
            return by_label, (size_target[s] - size[s]) / size_target[s]
        best = max(splits, key=need)
        assign[g] = best
        have[best].update(groups[g])
        size[best] += sum(groups[g].values())
    out = {s: [e for e in entries if assign[key(e)] == s] for s in splits}
    if not leaky:
        check_no_group_overlap(out)
    return out


def check_no_group_overlap(splits: dict[str, list[Entry]]) -> None:
    """Raise :class:`LeakageError` naming every group found in more than one split."""
    seen: dict[str, set[str]] = defaultdict(set)
    for name, rows in splits.items():
        for e in rows:
            seen[e.group].add(name)
    crossing = {g: sorted(s) for g, s in seen.items() if len(s) > 1}
    if crossing:
        listed = ", ".join(f"{g} in {s}" for g, s in sorted(crossing.items())[:10])
        raise LeakageError(f"{len(crossing)} group(s) appear in more than one split: {listed}")


def split_counts(splits: dict[str, list[Entry]]) -> dict:
    """Per-class clip counts per split, plus totals and group counts, for reports/split.json."""
    labels = sorted({e.label for rows in splits.values() for e in rows})
    return {
        "per_class": {lab: {s: sum(e.label == lab for e in rows) for s, rows in splits.items()} for lab in labels},
        "clips": {s: len(rows) for s, rows in splits.items()},
        "groups": {s: len({e.group for e in rows}) for s, rows in splits.items()},
    }
