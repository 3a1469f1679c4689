from collections import Counter

import pytest

from audioclf.data.manifest import Entry
from audioclf.data.split import (
    LeakageError,
    check_no_group_overlap,
    grouped_split,
    make_folds,
    read_folds,
    split_counts,
    write_folds,
)

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def make_entries(groups_per_label: dict[str, int], clips: int = 4) -> list[Entry]:
    return [
        Entry(f"{lab}/{g}_{k}.wav", lab, f"{lab}-{g}", 1.0, 16000, 1, "0" * 64)
        for lab, n in groups_per_label.items()
        for g in range(n)
        for k in range(clips)
    ]


def test_groups_never_cross_and_every_clip_assigned():
    entries = make_entries({"a": 40, "b": 20, "c": 7, "d": 3})
    splits = grouped_split(entries, FRACTIONS, seed=0)
    check_no_group_overlap(splits)
    assert sorted(e.path for rows in splits.values() for e in rows) == sorted(
        e.path for e in entries
    )


def test_stratified_within_tolerance():
    entries = make_entries({"a": 60, "b": 40, "c": 20})
    splits = grouped_split(entries, FRACTIONS, seed=1)
    for label, total in Counter(e.label for e in entries).items():
        for name, frac in FRACTIONS.items():
            share = sum(e.label == label for e in splits[name]) / total
            assert abs(share - frac) <= 0.05, (label, name, share)


def test_rare_class_reaches_every_split():
    splits = grouped_split(make_entries({"common": 30, "rare": 3}), FRACTIONS, seed=0)
    assert all(any(e.label == "rare" for e in rows) for rows in splits.values())


def test_seeded():
    entries = make_entries({"a": 30, "b": 9})
    assert grouped_split(entries, FRACTIONS, seed=3) == grouped_split(entries, FRACTIONS, seed=3)


def test_multi_label_groups_stay_whole():
    # speakers: every speaker has every emotion (EmoDB-like)
    entries = [
        Entry(f"{s}_{lab}_{k}.wav", lab, f"spk{s}", 1.0, 16000, 1, "0" * 64)
        for s in range(10)
        for lab in ("anger", "joy", "calm")
        for k in range(3)
    ]
    splits = grouped_split(entries, FRACTIONS, seed=0)
    check_no_group_overlap(splits)
    assert {name: len({e.group for e in rows}) for name, rows in splits.items()}["train"] >= 6


def test_overlap_is_reported_with_group_names():
    a = Entry("x.wav", "a", "rec1", 1.0, 16000, 1, "0" * 64)
    b = Entry("y.wav", "a", "rec1", 1.0, 16000, 1, "0" * 64)
    with pytest.raises(LeakageError, match=r"rec1 in \['test', 'train'\]"):
        check_no_group_overlap({"train": [a], "val": [], "test": [b]})


def test_leaky_split_puts_one_recording_on_both_sides():
    entries = make_entries({"a": 10, "b": 10}, clips=6)
    splits = grouped_split(entries, FRACTIONS, seed=0, leaky=True)
    train_groups = {e.group for e in splits["train"]}
    assert train_groups & {e.group for e in splits["test"]}


def test_counts_report():
    splits = grouped_split(make_entries({"a": 10, "b": 5}), FRACTIONS, seed=0)
    counts = split_counts(splits)
    assert sum(counts["clips"].values()) == 60
    assert sum(counts["per_class"]["b"].values()) == 20


def _test_sets(folds):
    return [sorted(e.path for e in fold["test"]) for fold in folds]


@pytest.mark.parametrize("strategy", ["kfold", "official", "logo"])
def test_cv_folds_cover_every_clip_once_and_keep_groups(strategy):
    entries = [
        Entry(
            e.path,
            e.label,
            e.group,
            1.0,
            16000,
            1,
            "0" * 64,
            {"fold": str(int(e.group.split("-")[1]) % 5 + 1)},
        )
        for e in make_entries({"a": 20, "b": 10, "c": 5})
    ]
    folds = make_folds(entries, strategy=strategy, fractions=FRACTIONS, seed=0, k=5)
    tested = [p for s in _test_sets(folds) for p in s]
    assert sorted(tested) == sorted(e.path for e in entries)  # each clip tested exactly once
    for fold in folds:
        check_no_group_overlap(fold)
        assert len(fold["train"]) + len(fold["val"]) + len(fold["test"]) == len(entries)
    group_folds = Counter(
        e.group for fold in folds for e in fold["test"] if e.path.endswith("_0.wav")
    )
    assert set(group_folds.values()) == {1}  # each group is a test group once
    assert len(folds) == {"kfold": 5, "official": 5, "logo": 35}[strategy]


def test_kfold_is_stratified():
    entries = make_entries({"a": 40, "b": 20, "c": 10})
    for fold in make_folds(entries, strategy="kfold", fractions=FRACTIONS, seed=2, k=5):
        for label, total in Counter(e.label for e in entries).items():
            assert abs(sum(e.label == label for e in fold["test"]) / total - 0.2) <= 0.05


def test_official_needs_its_column():
    with pytest.raises(ValueError, match="needs a 'fold' column in the manifest"):
        make_folds(make_entries({"a": 5}), strategy="official", fractions=FRACTIONS, seed=0)


def test_kfold_needs_enough_groups():
    with pytest.raises(ValueError, match="split.k=5 folds need at least 5 groups, got 3"):
        make_folds(make_entries({"a": 3}), strategy="kfold", fractions=FRACTIONS, seed=0)


def test_folds_roundtrip_and_test_lists_live_apart(tmp_path):
    folds = make_folds(
        make_entries({"a": 20, "b": 10}), strategy="kfold", fractions=FRACTIONS, seed=0, k=3
    )
    write_folds(folds, tmp_path / "split", tmp_path / "test")
    assert not list((tmp_path / "split").rglob("test*"))
    back = read_folds(tmp_path / "split", tmp_path / "test")
    assert [{s: [e.path for e in rows] for s, rows in f.items()} for f in back] == [
        {s: [e.path for e in rows] for s, rows in f.items()} for f in folds
    ]
    assert set(read_folds(tmp_path / "split")[0]) == {"train", "val"}
