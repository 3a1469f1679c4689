"""train.norm: group -- each group's own statistics (golden values on a hand-made table), over every
split and never the labels, applied per segment by load_split."""

import json

import numpy as np
import pytest

from audioclf.features.table import FeatureTable, Row, load_split, write_index
from audioclf.training.data import group_statistics, normalisation


def write_table(folder, x: np.ndarray, rows: list[Row], kind: str = "egemaps") -> FeatureTable:
    """A feature table folder holding ``x`` (S, C, F, T) and ``rows``."""
    folder.mkdir(parents=True)
    x.astype(np.float32).tofile(folder / "features.f32")
    write_index(rows, folder / "index.csv")
    meta = {
        "shape": list(x.shape),
        "dtype": "float32",
        "labels": sorted({r.label for r in rows}),
        "frontend": {"kind": kind},
        "frontend_key": f"{kind}-test",
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return FeatureTable(folder)


# group a: two segments of (1 channel, 2 bands, 2 frames); group b: one
X = np.array(
    [
        [[[1.0, 3.0], [0.0, 0.0]]],  # a
        [[[5.0, 7.0], [2.0, 2.0]]],  # a
        [[[4.0, 4.0], [6.0, 8.0]]],  # b
    ]
)
ROWS = [Row("a1.wav", "x", "a", 0), Row("a2.wav", "y", "a", 0), Row("b1.wav", "x", "b", 0)]


def test_each_group_gets_its_own_mean_and_std_per_band(tmp_path):
    stats = group_statistics(write_table(tmp_path / "t", X, ROWS))
    assert stats["kind"] == "group" and set(stats["groups"]) == {"a", "b"}
    a, b = stats["groups"]["a"], stats["groups"]["b"]
    # a, band 0: 1 3 5 7 -> 4, sqrt(5); band 1: 0 0 2 2 -> 1, 1
    np.testing.assert_allclose(a["mean"], [[4.0, 1.0]])
    np.testing.assert_allclose(a["std"], [[np.sqrt(5.0), 1.0]])
    # b, band 0: constant 4 -> std 0, taken as 1 (centred, not blown up); band 1: 6 8 -> 7, 1
    np.testing.assert_allclose(b["mean"], [[4.0, 7.0]])
    np.testing.assert_allclose(b["std"], [[1.0, 1.0]])


def test_load_split_normalises_each_segment_by_its_group(tmp_path):
    table = write_table(tmp_path / "t", X, ROWS)
    norm = normalisation(table, ["a1.wav"], "group")  # the training paths do not matter
    data = load_split(table, ["b1.wav", "a1.wav"], norm)
    x = data.batch(np.arange(len(data))).numpy()  # in table order: a1, b1
    s5 = np.sqrt(5.0)
    np.testing.assert_allclose(x[0, 0], [[-3 / s5, -1 / s5], [-1.0, -1.0]], rtol=1e-6)
    np.testing.assert_allclose(x[1, 0], [[0.0, 0.0], [-1.0, 1.0]], rtol=1e-6)


def test_the_labels_are_never_read(tmp_path):
    table = write_table(tmp_path / "t", X, ROWS)
    relabelled = write_table(
        tmp_path / "u",
        X,
        [Row(r.path, lab, r.group, 0) for r, lab in zip(ROWS, "zzz", strict=True)],
    )
    assert group_statistics(table) == group_statistics(relabelled)

    def no_labels(*_):
        raise AssertionError("group statistics read the labels")

    table.targets = no_labels  # the only way the table hands out labels
    group_statistics(table)


def test_every_split_counts_the_test_groups_too(tmp_path):
    # transductive by design: a group only in the test split still has its statistics
    stats = normalisation(
        write_table(tmp_path / "t", X, ROWS), train_paths=["a1.wav"], kind="group"
    )
    assert "b" in stats["groups"]


def test_a_group_without_statistics_is_refused(tmp_path):
    table = write_table(tmp_path / "t", X, ROWS)
    norm = {"kind": "group", "groups": {"a": group_statistics(table)["groups"]["a"]}}
    with pytest.raises(ValueError, match=r"group\(s\) \['b'\] have no statistics"):
        load_split(table, ["b1.wav"], norm)


def test_group_norm_warns_when_each_group_is_one_class(caplog):
    from audioclf.data.manifest import Entry
    from audioclf.training.stage import warn_single_class_groups

    def e(label, group):
        return Entry(path=f"{group}-{label}.wav", label=label, group=group, duration=1.0,
                     sample_rate=8000, channels=1, sha256="0")  # fmt: skip

    speakers = [e(lab, g) for g in ("s1", "s2") for lab in ("anger", "joy")]
    assert warn_single_class_groups(speakers) == 0.0 and not caplog.records
    recordings = [e("robin", "r1"), e("robin", "r1"), e("wren", "r2"), e("wren", "r3")]
    assert warn_single_class_groups(recordings) == 1.0
    assert "hold a single class" in caplog.text
