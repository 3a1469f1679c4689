"""Careless and hostile folder layouts: a stray file at the root, one class, odd member names.
Nothing is relabelled, nothing dropped goes unlisted, and every listed path exists."""

import json
import zipfile

import pytest

from audioclf.data.datasets import prepare
from audioclf.data.datasets.archive import DatasetError


def _listed(out_dir) -> dict[str, str]:
    return {u["path"]: u["reason"] for u in json.loads((out_dir / "unreadable.json").read_text())}


def test_a_stray_file_at_the_root_does_not_relabel_everything(tmp_path, audio, make_data, out_dir):
    files = {
        "README.txt": b"recorded in 2024",
        "top/cls_a/1.wav": audio.wav(),
        "top/cls_a/2.wav": audio.wav(freq=500.0),
        "top/cls_b/3.wav": audio.wav(freq=900.0),
    }
    (tmp_path / "a.zip").write_bytes(audio.zip(files))
    entries = prepare("folder", make_data(archive=str(tmp_path / "a.zip")), 0, out_dir)
    assert sorted((e.path, e.label) for e in entries) == [
        ("audio/cls_a/1.wav", "cls_a"),
        ("audio/cls_a/2.wav", "cls_a"),
        ("audio/cls_b/3.wav", "cls_b"),
    ]
    ignored = json.loads((out_dir / "source.json").read_text())["ignored"]
    assert [i["path"] for i in ignored] == ["README.txt"] and "not audio" in ignored[0]["reason"]


def test_one_class_stops_at_download_saying_what_it_found(tmp_path, audio, make_data, out_dir):
    files = {"README.txt": b"x", "top/only/1.wav": audio.wav(), "top/only/2.wav": audio.wav()}
    (tmp_path / "a.zip").write_bytes(audio.zip(files))
    with pytest.raises(DatasetError, match=r"gave 1 class \('only': 2 files\).*at least two"):
        prepare("folder", make_data(archive=str(tmp_path / "a.zip")), 0, out_dir)
    assert not (out_dir / "manifest.csv").exists()


HOSTILE = ["top/cls_a/../../x.wav", "..\\..\\x.wav", "./dup.wav", "top/cls_a/./y.wav"]


def test_every_dropped_member_is_listed_by_a_path_that_exists(tmp_path, audio, make_data, out_dir):
    files = {
        "top/cls_a/1.wav": audio.wav(),
        "top/cls_b/2.wav": audio.wav(freq=900.0),
        "top/cls_b/broken.wav": b"RIFF....WAVEfmt ",
        "top/stray.wav": audio.wav(),
        "top/cls_a/.hidden.wav": audio.wav(),
        "__MACOSX/top/cls_a/._1.wav": b"\x00\x05\x16\x07",
        **{name: audio.wav() for name in HOSTILE},
    }
    (tmp_path / "a.zip").write_bytes(audio.zip(files))
    entries = prepare("folder", make_data(archive=str(tmp_path / "a.zip")), 0, out_dir)
    assert sorted(e.path for e in entries) == ["audio/cls_a/1.wav", "audio/cls_b/2.wav"]
    listed = _listed(out_dir)
    for name in HOSTILE:
        assert "not a plain relative path" in listed[name], name
    assert "class sub-folder" in listed["top/stray.wav"]
    assert "cannot read audio header" in listed["audio/cls_b/broken.wav"]
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        members = set(zf.namelist())
    for path in listed:  # a member of the archive, or a file copied into the output
        assert path in members or (out_dir / path).is_file(), path
    ignored = json.loads((out_dir / "source.json").read_text())["ignored"]
    assert {i["path"] for i in ignored} == {"top/cls_a/.hidden.wav", "__MACOSX/top/cls_a/._1.wav"}
    assert all(i["reason"] == "a hidden file or folder" for i in ignored)
