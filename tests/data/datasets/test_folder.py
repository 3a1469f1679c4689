"""``folder`` adapter: class sub-folders, zips, CSV tables and file-name regexes."""

import json

import pytest

from audioclf.config import ParamsError
from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.source import DatasetError

SPEAKER = r"^\d+_(?P<group>[a-z]+)_\d+"
DIGIT = r"^(?P<label>\d+)_"


def digits(audio) -> dict[str, bytes]:
    """Free-spoken-digit style names: ``{digit}_{speaker}_{take}.wav``."""
    return {
        f"recordings/{d}_{who}_{take}.wav": audio.wav(freq=300 + 40 * d + take)
        for d in (0, 7)
        for who in ("jackson", "theo")
        for take in (0, 1)
    }


def test_class_subfolders_from_a_directory(audio, make_data, out_dir, tmp_path):
    root = audio.tree(
        tmp_path / "mine",
        {
            "dog/bark1.wav": audio.wav(),
            "dog/park/bark2.flac": audio.bytes("FLAC"),
            "cat/meow.wav": audio.wav(channels=2),
            "cat/notes.txt": b"ignored",
            ".DS_Store": b"x",
        },
    )
    entries = DATASETS["folder"](make_data(archive=str(root)), 0, out_dir)
    got = {e.path: (e.label, e.group, e.channels) for e in entries}
    assert got == {
        "audio/dog/bark1.wav": ("dog", "dog/bark1", 1),
        "audio/dog/park/bark2.flac": ("dog", "dog/park/bark2", 1),
        "audio/cat/meow.wav": ("cat", "cat/meow", 2),
    }
    assert (out_dir / "audio/cat/meow.wav").read_bytes() == (root / "cat/meow.wav").read_bytes()


def test_zip_with_a_wrapping_folder(audio, make_data, out_dir, tmp_path):
    files = {
        "mine/dog/a.wav": audio.wav(),
        "mine/cat/b.wav": audio.wav(),
        "__MACOSX/mine/dog/._a.wav": b"resource fork",
    }
    (tmp_path / "mine.zip").write_bytes(audio.zip(files))
    entries = DATASETS["folder"](make_data(archive=str(tmp_path / "mine.zip")), 0, out_dir)
    assert sorted((e.path, e.label) for e in entries) == [
        ("audio/cat/b.wav", "cat"),
        ("audio/dog/a.wav", "dog"),
    ]
    source = json.loads((out_dir / "source.json").read_text())
    assert source["url"] is None and len(source["archive_sha256"]) == 64


def test_label_and_speaker_from_file_names(audio, make_data, out_dir, tmp_path):
    root = audio.tree(tmp_path / "fsdd", digits(audio))
    data = make_data(archive=str(root), folder={"label_regex": DIGIT, "group_regex": SPEAKER})
    entries = DATASETS["folder"](data, 0, out_dir)
    assert sorted({(e.label, e.group) for e in entries}) == [
        ("0", "jackson"),
        ("0", "theo"),
        ("7", "jackson"),
        ("7", "theo"),
    ]
    assert len(entries) == 8


def test_csv_columns_and_group_regex_from_a_zip(audio, make_data, out_dir, tmp_path):
    files = digits(audio)
    rows = ["file,digit,session"] + [
        f"{n.removeprefix('recordings/')},{n[11]},s{i % 2}" for i, n in enumerate(sorted(files))
    ]
    rows.append("9_nobody_0.wav,9,s0")  # listed but absent: reported, not fatal
    files["recordings/labels.csv"] = "\n".join(rows).encode()
    files["recordings/extra/unnamed.wav"] = audio.wav()  # present but not in the table: listed
    files["recordings/README.txt"] = b"notes"
    (tmp_path / "fsdd.zip").write_bytes(audio.zip(files))
    data = make_data(
        archive=str(tmp_path / "fsdd.zip"),
        folder={
            "csv": "labels.csv",
            "path_column": "file",
            "label_column": "digit",
            "group_regex": SPEAKER,
        },
    )
    entries = DATASETS["folder"](data, 0, out_dir)
    assert len(entries) == 8
    e = next(e for e in entries if e.path == "audio/7_theo_1.wav")
    assert (e.label, e.group, e.extra) == ("7", "theo", {"session": "s1"})
    listed = json.loads((out_dir / "unreadable.json").read_text())
    assert [u["path"] for u in listed] == ["9_nobody_0.wav"] and "line 10" in listed[0]["reason"]
    ignored = json.loads((out_dir / "source.json").read_text())["ignored"]
    assert {(i["path"], i["reason"].split(" (")[0]) for i in ignored} == {
        ("recordings/extra/unnamed.wav", "an audio file that labels.csv does not name"),
        ("recordings/README.txt", "not audio"),
    }


def test_csv_group_column(audio, make_data, out_dir, tmp_path):
    root = audio.tree(
        tmp_path / "t",
        {
            "a.wav": audio.wav(),
            "b.wav": audio.wav(),
            "c.wav": audio.wav(),
            "t.csv": b"path,label,rec\na.wav,x,r1\nb.wav,x,r1\nc.wav,y,\n",
        },
    )
    data = make_data(
        archive=str(root), folder={"csv": "t.csv", "label_column": "label", "group_column": "rec"}
    )
    entries = DATASETS["folder"](data, 0, out_dir)
    assert [(e.path, e.label, e.group) for e in entries] == [
        ("audio/a.wav", "x", "r1"),
        ("audio/b.wav", "x", "r1"),
        ("audio/c.wav", "y", "c"),
    ]  # empty: the file


def test_unlabelled_and_unreadable_files_are_listed(audio, make_data, out_dir, tmp_path, caplog):
    root = audio.tree(
        tmp_path / "mine",
        {
            "dog/a.wav": audio.wav(),
            "dog/broken.wav": b"RIFF....WAVEfmt ",
            "stray.wav": audio.wav(),
            "cat/b.wav": audio.wav(),
        },
    )
    entries = DATASETS["folder"](make_data(archive=str(root)), 0, out_dir)
    assert sorted(e.path for e in entries) == ["audio/cat/b.wav", "audio/dog/a.wav"]
    reasons = {
        u["path"]: u["reason"] for u in json.loads((out_dir / "unreadable.json").read_text())
    }
    assert "class sub-folder" in reasons["stray.wav"]
    assert "cannot read audio header" in reasons["audio/dog/broken.wav"]
    assert "2 files left out" in caplog.text


def test_regex_that_matches_nothing_is_a_clear_error(audio, make_data, out_dir, tmp_path):
    root = audio.tree(tmp_path / "fsdd", digits(audio))
    data = make_data(archive=str(root), folder={"label_regex": r"^(?P<label>[a-z]+)\.wav$"})
    with pytest.raises(
        DatasetError, match="no usable audio files.*does not match data.folder.label_regex"
    ):
        DATASETS["folder"](data, 0, out_dir)


def test_needs_data_archive(make_data, out_dir):
    with pytest.raises(ParamsError, match="'data.archive' is null, but dataset=folder needs it"):
        DATASETS["folder"](make_data(), 0, out_dir)


def test_csv_problems_name_the_param(audio, make_data, out_dir, tmp_path):
    root = audio.tree(tmp_path / "t", {"a.wav": audio.wav(), "t.csv": b"path,label\na.wav,x\n"})
    with pytest.raises(FileNotFoundError, match="'data.folder.csv' is 'nope.csv'"):
        DATASETS["folder"](make_data(archive=str(root), folder={"csv": "nope.csv"}), 0, out_dir)
    with pytest.raises(ValueError, match=r"columns \['kind'\] that t.csv lacks"):
        DATASETS["folder"](
            make_data(archive=str(root), folder={"csv": "t.csv", "label_column": "kind"}),
            0,
            out_dir,
        )
