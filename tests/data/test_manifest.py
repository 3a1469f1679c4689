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
