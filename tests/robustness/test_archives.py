"""Crafted archives: nothing is written outside the target folder, and nothing expands without bound."""

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.archive import Archive, DatasetError, Limits, inside


def _zip(members: list[tuple[str, bytes]], symlinks: dict[str, str] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
        for name, target in dict(symlinks).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


HOSTILE_NAMES = [
    "/tmp/audioclf-escape-abs.wav",  # absolute
    "../audioclf-escape-up.wav",  # climbs out
    "birds/../../audioclf-escape-mid.wav",  # climbs out from inside
    "top//tmp/audioclf-escape-double.wav",  # absolute once "top/" is stripped
]


@pytest.fixture
def outside(tmp_path):
    """A folder beside the target: every test asserts it stays empty."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


def _prepare_folder(make_data, archive: Path, out_dir: Path, **folder):
    return DATASETS["folder"](make_data(archive=str(archive), folder=folder), 0, out_dir)


def test_member_names_that_escape_are_refused_and_reported(
    tmp_path, audio, make_data, out_dir, outside
):
    names = [n.replace("/tmp/", f"{outside}/") for n in HOSTILE_NAMES]
    good = [("top/birds/a.wav", audio.wav()), ("top/frogs/b.wav", audio.wav(freq=900.0))]
    (tmp_path / "hostile.zip").write_bytes(_zip(good + [(n, audio.wav()) for n in names]))
    entries = _prepare_folder(make_data, tmp_path / "hostile.zip", out_dir)
    assert sorted(e.path for e in entries) == ["audio/birds/a.wav", "audio/frogs/b.wav"]
    assert list(outside.iterdir()) == [] and not list(tmp_path.glob("audioclf-escape*"))
    written = {p.resolve() for p in out_dir.rglob("*") if p.is_file()}
    assert all(p.is_relative_to(out_dir.resolve()) for p in written)
    reasons = (out_dir / "unreadable.json").read_text()
    assert reasons.count("refused from hostile.zip") == len(names)


def test_the_destination_check_itself():
    root = Path("/data/raw/audio")
    for rel in ("/etc/passwd", "../x", "a/../../x", "", ".", "a/b/../../../x"):
        assert inside(root, rel) is None, rel
    for rel in ("a.wav", "a/b.wav", "C:/win.wav", "..\\..\\win.wav", "a/./b.wav"):
        assert inside(root, rel).is_relative_to(root), rel


def test_zip_symlinks_and_duplicate_names_are_refused(tmp_path, audio, make_data, out_dir):
    members = [
        ("birds/a.wav", audio.wav()),
        ("birds/a.wav", audio.wav(freq=300.0)),
        ("frogs/b.wav", audio.wav()),
    ]
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = _zip(members, symlinks={"birds/link.wav": "/etc/passwd"})
    (tmp_path / "a.zip").write_bytes(data)
    entries = _prepare_folder(make_data, tmp_path / "a.zip", out_dir)
    assert sorted(e.path for e in entries) == ["audio/birds/a.wav", "audio/frogs/b.wav"]
    reasons = (out_dir / "unreadable.json").read_text()
    assert "a symlink member" in reasons and "a second member of the same name" in reasons
    assert not (out_dir / "audio/birds/link.wav").exists()


def test_folder_symlinks_out_of_the_folder_are_not_followed(
    tmp_path, audio, make_data, out_dir, outside
):
    secret = outside / "secret.wav"
    secret.write_bytes(audio.wav(freq=1234.0))
    root = audio.tree(tmp_path / "ds", {"birds/a.wav": audio.wav(), "frogs/b.wav": audio.wav()})
    os.symlink(secret, root / "birds" / "stolen.wav")
    os.symlink(outside, root / "linked_dir")
    os.symlink(root / "frogs" / "b.wav", root / "frogs" / "alias.wav")  # inside: allowed
    entries = _prepare_folder(make_data, root, out_dir)
    assert sorted(e.path for e in entries) == [
        "audio/birds/a.wav",
        "audio/frogs/alias.wav",
        "audio/frogs/b.wav",
    ]
    reasons = (out_dir / "unreadable.json").read_text()
    assert "outside the folder" in reasons and "a symlinked folder" in reasons


def test_a_zip_bomb_is_refused_before_it_is_written(tmp_path, audio, make_data, out_dir):
    bomb = b"RIFF" + bytes(20 << 20)  # 20 MB of zeros behind a header: ~20 kB zipped (1000:1)
    members = [
        ("ds/birds/a.wav", audio.wav()),
        ("ds/frogs/b.wav", audio.wav()),
        ("ds/birds/bomb.wav", bomb),
    ]
    (tmp_path / "bomb.zip").write_bytes(_zip(members))
    assert (tmp_path / "bomb.zip").stat().st_size < 100_000
    entries = _prepare_folder(make_data, tmp_path / "bomb.zip", out_dir)
    assert [e.path for e in entries] == ["audio/birds/a.wav", "audio/frogs/b.wav"]
    assert not (out_dir / "audio/birds/bomb.wav").exists()
    assert "data.max_compression_ratio" in (out_dir / "unreadable.json").read_text()


def test_the_total_size_cap_holds_while_copying(tmp_path, audio):
    (tmp_path / "a.zip").write_bytes(
        _zip([(f"birds/{i}.wav", audio.wav(seconds=0.5)) for i in range(4)])
    )
    with pytest.raises(DatasetError, match="data.max_archive_gb"):
        Archive(tmp_path / "a.zip", Limits(max_bytes=10_000))
    root = audio.tree(tmp_path / "ds", {f"birds/{i}.wav": audio.wav(seconds=0.5) for i in range(4)})
    with (
        Archive(root, Limits(max_bytes=12_000)) as archive,
        pytest.raises(DatasetError, match="gave more than"),
    ):
        for name in archive.names:
            archive.extract(name, tmp_path / "out", name)


def test_csv_paths_that_point_outside_are_refused(tmp_path, audio, make_data, out_dir, outside):
    (outside / "elsewhere.wav").write_bytes(audio.wav())
    table = f"path,label\nbirds/a.wav,bird\n{outside}/elsewhere.wav,bird\n../../outside/elsewhere.wav,bird\n"
    root = audio.tree(tmp_path / "ds", {"birds/a.wav": audio.wav(), "meta.csv": table.encode()})
    entries = _prepare_folder(make_data, root, out_dir, csv="meta.csv", label_column="label")
    assert [e.path for e in entries] == ["audio/birds/a.wav"]
    assert sorted(p.name for p in outside.iterdir()) == ["elsewhere.wav"]


def test_an_esc50_row_whose_filename_is_absolute_writes_nothing_outside(
    tmp_path, audio, make_data, out_dir, outside
):
    target = outside / "planted.wav"
    meta = "filename,fold,target,category,esc10,src_file,take\n1-1-A-0.wav,1,0,dog,True,1,A\n"
    meta += f"{target},1,0,dog,True,2,A\n"
    members = [
        ("ESC-50-master/meta/esc50.csv", meta.encode()),
        ("ESC-50-master/audio/1-1-A-0.wav", audio.wav()),
        (f"ESC-50-master/audio/{target}", audio.wav()),
    ]
    (tmp_path / "esc.zip").write_bytes(_zip(members))
    data = make_data(archive=str(tmp_path / "esc.zip"), esc50={"sha256": None})
    from audioclf.data.datasets import esc50

    entries = esc50.prepare(data, 0, out_dir)
    assert [e.path for e in entries] == ["audio/1-1-A-0.wav"] and not target.exists()
