from pathlib import Path

import pytest

from audioclf.data.manifest import COLUMNS, Entry, read_manifest, write_manifest


def test_roundtrip_with_extra_columns(tmp_path):
    entries = [
        Entry("a/1.wav", "dog", "g1", 5.0, 44100, 1, "ab" * 32, {"fold": "1"}),
        Entry("b/2.wav", "cat", "g2", 2.5, 16000, 2, "cd" * 32, {"fold": "2", "speaker": "03"}),
    ]
    path = tmp_path / "manifest.csv"
    write_manifest(entries, path)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*COLUMNS, "fold", "speaker"]
    back = read_manifest(path)
    assert back == entries
    assert back[1].extra == {"fold": "2", "speaker": "03"} and back[0].extra["speaker"] == ""


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,label\nx.wav,dog\n")
    with pytest.raises(ValueError, match=r"lacks columns \['group', 'duration'"):
        read_manifest(path)


def test_bad_row_is_located(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(",".join(COLUMNS) + "\nx.wav,dog,g,notanumber,16000,1,ab\n")
    with pytest.raises(ValueError, match="line 2"):
        read_manifest(path)


def test_missing_manifest_says_which_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro download"):
        read_manifest(tmp_path / "none.csv")


def test_an_absolute_path_under_a_relative_root_is_described(tmp_path, monkeypatch):
    # the archive adapters hand absolute paths; the download stage's root is relative (data/...)
    import numpy as np
    import soundfile as sf

    from audioclf.data.manifest import describe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/raw/audio").mkdir(parents=True)
    sf.write(tmp_path / "data/raw/audio/a.wav", np.zeros(800, np.float32), 8000)
    entry = describe(tmp_path / "data/raw/audio/a.wav", Path("data/raw"), "x", "g")
    assert entry.path == "audio/a.wav" and entry.duration == 0.1
