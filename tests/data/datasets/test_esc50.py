"""ESC-50 adapter on a miniature archive in the official layout, served over HTTP."""

import csv
import hashlib
import json

import pytest
import soundfile as sf

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.fetch import ChecksumError, DownloadError
from audioclf.data.manifest import read_manifest, write_manifest

# filename, fold, target, category, esc10, src_file, take: two clips share source 100032
ROWS = [
    ("1-100032-A-0.wav", "1", "0", "dog", "True", "100032", "A"),
    ("1-100032-B-0.wav", "1", "0", "dog", "True", "100032", "B"),
    ("2-110389-A-0.wav", "2", "0", "dog", "True", "110389", "A"),
    ("1-100038-A-14.wav", "1", "14", "chirping_birds", "False", "100038", "A"),
    ("3-155642-A-14.wav", "3", "14", "chirping_birds", "False", "155642", "A"),
]
PREFIX = "ESC-50-master/"


def esc50_files(audio) -> dict[str, bytes]:
    lines = ["filename,fold,target,category,esc10,src_file,take"] + [",".join(r) for r in ROWS]
    files = {
        f"{PREFIX}meta/esc50.csv": ("\n".join(lines) + "\n").encode(),
        f"{PREFIX}README.md": b"ESC-50",
    }
    for i, row in enumerate(ROWS):
        files[f"{PREFIX}audio/{row[0]}"] = audio.wav(
            sr=44100, seconds=0.02 * (i + 1), freq=300 + 100 * i
        )
    return files


@pytest.fixture
def archive(server, audio):
    files = esc50_files(audio)
    server.files["/karoldvl/ESC-50/archive/master.zip"] = audio.zip(files)
    return files


def test_manifest_from_the_downloaded_archive(server, archive, make_data, out_dir, tmp_path):
    url = server.url("/karoldvl/ESC-50/archive/master.zip")
    entries = DATASETS["esc50"](make_data(esc50={"url": url}), 0, out_dir)

    by_name = {e.path: e for e in entries}
    assert sorted(by_name) == sorted(f"audio/{r[0]}" for r in ROWS)
    for i, (name, fold, _, category, _, src, _) in enumerate(ROWS):
        e = by_name[f"audio/{name}"]
        assert (e.label, e.group, e.extra) == (category, src, {"fold": fold})
        assert (e.sample_rate, e.channels) == (44100, 1)
        assert e.duration == pytest.approx(0.02 * (i + 1), abs=1 / 44100)
        assert e.sha256 == hashlib.sha256(archive[f"{PREFIX}audio/{name}"]).hexdigest()
        assert (out_dir / e.path).read_bytes() == archive[f"{PREFIX}audio/{name}"]  # unaltered
    assert by_name["audio/1-100032-A-0.wav"].group == by_name["audio/1-100032-B-0.wav"].group

    cached = tmp_path / "downloads" / "esc50" / "master.zip"
    source = json.loads((out_dir / "source.json").read_text())
    assert source["archive_sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert json.loads((out_dir / "unreadable.json").read_text()) == []

    write_manifest(entries, out_dir / "manifest.csv")
    with open(out_dir / "manifest.csv", newline="") as fh:
        assert csv.DictReader(fh).fieldnames[-1] == "fold"
    assert [e.extra["fold"] for e in read_manifest(out_dir / "manifest.csv")] == [
        e.extra["fold"] for e in entries
    ]


def test_a_rerun_uses_the_download_cache(server, archive, make_data, tmp_path):
    data = make_data(esc50={"url": server.url("/karoldvl/ESC-50/archive/master.zip")})
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        DATASETS["esc50"](data, 0, tmp_path / run)
    assert len(server.hits("/karoldvl/ESC-50/archive/master.zip")) == 1


def test_esc10_keeps_the_subset(server, archive, make_data, out_dir):
    data = make_data(
        esc50={"url": server.url("/karoldvl/ESC-50/archive/master.zip"), "esc10": True}
    )
    assert {e.label for e in DATASETS["esc50"](data, 0, out_dir)} == {"dog"}


def test_checksum_mismatch_is_rejected(server, archive, make_data, out_dir, tmp_path):
    data = make_data(
        esc50={"url": server.url("/karoldvl/ESC-50/archive/master.zip"), "sha256": "ab" * 32}
    )
    with pytest.raises(ChecksumError, match="expected " + "ab" * 32):
        DATASETS["esc50"](data, 0, out_dir)
    assert list((tmp_path / "downloads" / "esc50").iterdir()) == []


def test_a_download_larger_than_max_archive_gb_is_cut_off(
    server, archive, make_data, out_dir, tmp_path
):
    url = server.url("/karoldvl/ESC-50/archive/master.zip")
    data = make_data(esc50={"url": url}, max_archive_gb=1e-6)  # 1,000 bytes
    with pytest.raises(DownloadError, match=r"announces [\d,]+ bytes, more than the 1,000 allowed"):
        DATASETS["esc50"](data, 0, out_dir)
    assert list((tmp_path / "downloads" / "esc50").iterdir()) == []  # nothing half-written kept


def test_offline_error_names_the_url_and_data_archive(make_data, out_dir, offline_url):
    url = offline_url
    with pytest.raises(DownloadError) as err:
        DATASETS["esc50"](make_data(esc50={"url": url}, retries=1), 0, out_dir)
    assert url in str(err.value) and "data.archive" in str(err.value)


@pytest.mark.parametrize("form", ["zip", "extracted", "extracted-parent"])
def test_archive_supplied_by_hand(audio, make_data, out_dir, tmp_path, form):
    files = esc50_files(audio)
    if form == "zip":
        archive = tmp_path / "ESC-50-master.zip"
        archive.write_bytes(audio.zip(files))
    else:
        audio.tree(tmp_path / "by_hand", files)
        archive = tmp_path / "by_hand" / ("ESC-50-master" if form == "extracted" else "")
    entries = DATASETS["esc50"](
        make_data(archive=str(archive), esc50={"url": "http://127.0.0.1:9/x.zip"}), 0, out_dir
    )  # the URL is never contacted
    assert len(entries) == len(ROWS)


def test_unreadable_and_missing_clips_are_listed_not_fatal(
    audio, make_data, out_dir, tmp_path, caplog
):
    files = esc50_files(audio)
    files[f"{PREFIX}audio/{ROWS[0][0]}"] = b"RIFF\x00\x00not audio at all"
    del files[f"{PREFIX}audio/{ROWS[1][0]}"]
    (tmp_path / "esc.zip").write_bytes(audio.zip(files))
    entries = DATASETS["esc50"](make_data(archive=str(tmp_path / "esc.zip")), 0, out_dir)
    assert len(entries) == len(ROWS) - 2
    listed = {u["path"]: u["reason"] for u in json.loads((out_dir / "unreadable.json").read_text())}
    assert set(listed) == {f"audio/{ROWS[0][0]}", f"audio/{ROWS[1][0]}"}
    assert "cannot read audio header" in listed[f"audio/{ROWS[0][0]}"]
    assert "missing" in listed[f"audio/{ROWS[1][0]}"]
    assert "2 files left out of the manifest" in caplog.text
    sf.info(str(out_dir / entries[0].path))  # the kept ones are real audio


def test_not_an_esc50_archive(audio, make_data, out_dir, tmp_path):
    (tmp_path / "other.zip").write_bytes(audio.zip({"x/readme.txt": b"hi"}))
    with pytest.raises(ValueError, match="has no meta/esc50.csv"):
        DATASETS["esc50"](make_data(archive=str(tmp_path / "other.zip")), 0, out_dir)


def test_a_download_that_is_not_a_zip_says_to_delete_it(server, make_data, out_dir, tmp_path):
    server.files["/master.zip"] = b"<html>rate limited</html>"
    with pytest.raises(ValueError, match="is not a zip file; delete it to download again") as err:
        DATASETS["esc50"](make_data(esc50={"url": server.url("/master.zip")}), 0, out_dir)
    assert str(tmp_path / "downloads" / "esc50" / "master.zip") in str(err.value)
