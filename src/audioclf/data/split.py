"""Grouped, stratified train/val/test splits and cross-validation folds.

All clips of a group (recording, source file, speaker) go to one split; within that
constraint each class is spread over the splits as close to the target fractions as
the groups allow. Strategies (``split.strategy``):

* ``holdout``: one grouped, stratified train/val/test split;
* ``official``: the dataset's own folds (a manifest column, e.g. ESC-50's ``fold``):
  each fold is the test set once, validation is carved from the other folds, grouped;
* ``kfold``: ``StratifiedGroupKFold`` with ``k`` folds, validation carved likewise;
* ``logo``: leave one group out (one EmoDB speaker per fold).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from audioclf.config.data import STRATEGIES, SplitConfig
from audioclf.data.manifest import Entry, read_manifest, write_manifest
from audioclf.errors import MissingInputError, UserError
from audioclf.io import atomic_path

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
Split = dict[str, list[Entry]]


class LeakageError(UserError, ValueError):
    """A group, or the same audio, appears in more than one split."""


class SplitError(UserError, ValueError):
    """The dataset cannot be split as the params ask (too few groups, no fold column)."""


def grouped_split(
    entries: list[Entry], fractions: dict[str, float], seed: int, *, leaky: bool = False
) -> dict[str, list[Entry]]:
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
    tiebreak = dict(zip(names, rng.permutation(len(names)), strict=True))
    # rarest label first, then larger groups first (they are hardest to place late)
    order = sorted(
        names,
        key=lambda g: (
            min(label_total[lab] for lab in groups[g]),
            -sum(groups[g].values()),
            tiebreak[g],
        ),
    )
    splits = list(fractions)
    target = {s: {lab: fractions[s] * n for lab, n in label_total.items()} for s in splits}
    have = {s: Counter() for s in splits}
    size_target = {s: fractions[s] * len(entries) for s in splits}
    size = Counter()
    assign = {}
    for g in order:

        def need(s, counts=groups[g]):
            by_label = sum(
                n * (target[s][lab] - have[s][lab]) / target[s][lab] for lab, n in counts.items()
            )
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
        "per_class": {
            lab: {s: sum(e.label == lab for e in rows) for s, rows in splits.items()}
            for lab in labels
        },
        "clips": {s: len(rows) for s, rows in splits.items()},
        "groups": {s: len({e.group for e in rows}) for s, rows in splits.items()},
    }


def split_folds(entries: list[Entry], cfg: SplitConfig, *, seed: int) -> list[Split]:
    """:func:`make_folds` with the ``split`` params (groups already merged by
    :func:`audioclf.data.duplicates.merge_duplicate_groups` where ``split.merge_duplicates``); logs
    what it made."""
    folds = make_folds(
        entries,
        strategy=cfg.strategy,
        seed=seed,
        k=cfg.k,
        fold_column=cfg.fold_column,
        fractions={"train": cfg.train, "val": cfg.val, "test": cfg.test},
        leaky=cfg.leaky,
    )
    log.info(
        "split: %s, %d fold(s); fold 0: %s clips%s",
        cfg.strategy,
        len(folds),
        {s: len(rows) for s, rows in folds[0].items()},
        " (LEAKY: groups ignored)" if cfg.leaky else "",
    )
    return folds


def split_report(folds: list[Split], cfg: SplitConfig) -> dict:
    """``reports/split.json``: the strategy and :func:`split_counts` of every fold."""
    return {
        "strategy": cfg.strategy,
        "leaky": cfg.leaky,
        "folds": [split_counts(fold) for fold in folds],
    }


def make_folds(
    entries: list[Entry],
    *,
    strategy: str,
    fractions: dict[str, float],
    seed: int,
    k: int = 5,
    fold_column: str = "fold",
    leaky: bool = False,
) -> list[Split]:
    """Train/val/test splits for one strategy: one for ``holdout``, one per fold otherwise.

    Every clip is in the test set of exactly one fold (for the cross-validation
    strategies); no group crosses splits within a fold unless ``leaky``.

    Raises:
        SplitError: unknown strategy, too few groups for ``k``, or no ``fold_column``.
    """
    if strategy not in STRATEGIES:
        raise SplitError(f"split.strategy is {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    if strategy == "holdout":
        return [grouped_split(entries, fractions, seed, leaky=leaky)]
    key = (lambda e: e.path) if leaky else (lambda e: e.group)
    if strategy == "official":
        if any(fold_column not in e.extra for e in entries):
            raise SplitError(
                f"split.strategy=official needs a '{fold_column}' column in the manifest (ESC-50 has "
                f"one); set split.fold_column, or use split.strategy=kfold"
            )
        fold_of = [e.extra[fold_column] for e in entries]
        test_sets = [
            [i for i, f in enumerate(fold_of) if f == value]
            for value in sorted(set(fold_of), key=_natural)
        ]
    elif strategy == "logo":
        names = sorted({key(e) for e in entries})
        if len(names) < 3:
            raise SplitError(f"split.strategy=logo needs at least 3 groups, got {len(names)}")
        test_sets = [[i for i, e in enumerate(entries) if key(e) == g] for g in names]
    else:
        n_groups = len({key(e) for e in entries})
        if n_groups < k:
            raise SplitError(f"split.k={k} folds need at least {k} groups, got {n_groups}")
        from sklearn.model_selection import StratifiedGroupKFold  # here: predict needs no sklearn

        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        labels = [e.label for e in entries]
        test_sets = [
            list(test)
            for _, test in cv.split(np.zeros(len(entries)), labels, [key(e) for e in entries])
        ]
    val_share = fractions["val"] / (fractions["train"] + fractions["val"])
    folds = []
    for n, test_idx in enumerate(test_sets):
        in_test = set(test_idx)
        rest = [e for i, e in enumerate(entries) if i not in in_test]
        inner = grouped_split(
            rest, {"train": 1 - val_share, "val": val_share}, seed + n, leaky=leaky
        )
        fold = {
            "train": inner["train"],
            "val": inner["val"],
            "test": [entries[i] for i in test_idx],
        }
        if not leaky:
            check_no_group_overlap(fold)
        folds.append(fold)
    return folds


def _natural(value: str) -> tuple:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def write_folds(folds: list[Split], split_dir: Path, test_dir: Path) -> None:
    """``split_dir/fold_<n>/{train,val}.csv`` and ``test_dir/fold_<n>.csv``, each in the manifest schema.

    Test lists live in their own folder so that a stage can depend on the training
    and validation lists without depending on (or seeing) the test lists.
    """
    with atomic_path(split_dir) as tmp_split, atomic_path(test_dir) as tmp_test:
        for n, fold in enumerate(folds):
            write_manifest(fold["train"], tmp_split / f"fold_{n}" / "train.csv")
            write_manifest(fold["val"], tmp_split / f"fold_{n}" / "val.csv")
            write_manifest(fold["test"], tmp_test / f"fold_{n}.csv")


def fold_names(folder: Path) -> list[str]:
    """``fold_0``, ``fold_1``, ... in ``folder`` (folds of a split folder, or test lists ``fold_<n>.csv``), in
    numeric order."""
    found = [
        p.name if p.is_dir() else p.stem
        for p in Path(folder).glob("fold_*")
        if p.is_dir() or p.suffix == ".csv"
    ]
    names = sorted((n for n in found if n[5:].isdigit()), key=lambda n: int(n[5:]))
    if not names:
        raise MissingInputError(f"no folds (fold_<n>) in {folder} (run: dvc repro split)")
    return names


def read_test_lists(test_dir: Path, names: list[str]) -> list[list[str]]:
    """The test files of each named fold (``test_dir/<name>.csv``)."""
    return [[e.path for e in read_manifest(Path(test_dir) / f"{n}.csv")] for n in names]


def read_folds(split_dir: Path, test_dir: Path | None = None) -> list[Split]:
    """Read back what :func:`write_folds` wrote (without test lists when ``test_dir`` is None)."""
    folds = []
    for name in fold_names(split_dir):
        fold = {s: read_manifest(Path(split_dir) / name / f"{s}.csv") for s in ("train", "val")}
        if test_dir is not None:
            fold["test"] = read_manifest(Path(test_dir) / f"{name}.csv")
        folds.append(fold)
    return folds
