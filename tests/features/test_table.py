"""Reading the feature cache folder: memory-mapped (S, C, F, T) segments plus their index."""

import json

import numpy as np
import pytest

from audioclf.features.table import DATA_FILE, META_FILE, FeatureTable, Row, write_index

ROWS = [
    Row("a.wav", "dog", "r1", 0, 0.0),
    Row("a.wav", "dog", "r1", 1, 4.0),
    Row("b.wav", "cat", "r2", 0, 0.0),
    Row("c.wav", "dog", "r3", 0, 0.0),
]


def write_cache(folder, rows=ROWS, shape=(3, 5, 7)):
    folder.mkdir()
    data = np.arange(len(rows) * np.prod(shape), dtype=np.float32).reshape(len(rows), *shape)
    data.tofile(folder / DATA_FILE)
    write_index(rows, folder / "index.csv")
    meta = {
        "shape": [len(rows), *shape],
        "dtype": "float32",
        "labels": ["cat", "dog"],
        "frontend": {},
        "frontend_key": "mfcc-0123",
    }
    (folder / META_FILE).write_text(json.dumps(meta))
    return data


def test_select_reads_segments_with_their_channel_axis(tmp_path):
    data = write_cache(tmp_path / "cache")
    store = FeatureTable(tmp_path / "cache")
    assert store.in_channels == 3 and store.frontend_key == "mfcc-0123" and store.rows == ROWS
    x, y, rows = store.select(["c.wav", "a.wav", "missing.wav"])
    assert x.shape == (3, 3, 5, 7) and list(y) == [1, 1, 1]
    assert [(r.path, r.segment, r.start_s) for r in rows] == [
        ("a.wav", 0, 0.0),
        ("a.wav", 1, 4.0),
        ("c.wav", 0, 0.0),
    ]
    np.testing.assert_array_equal(x, data[[0, 1, 3]])
    assert list(store.indices(["b.wav"])) == [2] and list(store.targets(np.array([2, 0]))) == [0, 1]


def test_missing_cache_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="run: dvc repro features"):
        FeatureTable(tmp_path / "nothing")


def test_an_old_three_axis_cache_is_refused(tmp_path):
    write_cache(tmp_path / "cache")
    meta = json.loads((tmp_path / "cache" / META_FILE).read_text())
    meta["shape"] = [4, 15, 7]
    (tmp_path / "cache" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"expected \(segments, channels, bands, frames\)"):
        FeatureTable(tmp_path / "cache")


def test_an_empty_cache_opens(tmp_path):
    write_cache(tmp_path / "cache", rows=[])
    store = FeatureTable(tmp_path / "cache")
    assert store.data.shape == (0, 3, 5, 7) and store.select(["a.wav"])[0].shape == (0, 3, 5, 7)
