"""EmoDB adapter on a miniature archive with official file names (not the shared copy)."""

import json
from collections import Counter

import pytest

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.emodb import EMOTIONS, parse_name
from audioclf.data.datasets.fetch import ChecksumError, DownloadError

# one utterance per emotion code, three speakers, two texts
NAMES = [
    "03a01Wa.wav",
    "03a01La.wav",
    "08a02Ea.wav",
    "08a01Ab.wav",
    "16b10Fa.wav",
    "16a02Tc.wav",
    "16a01Nb.wav",
]
EXPECTED = {
    "03a01Wa.wav": ("anger", "03", "a01"),
    "03a01La.wav": ("boredom", "03", "a01"),
    "08a02Ea.wav": ("disgust", "08", "a02"),
    "08a01Ab.wav": ("fear", "08", "a01"),
    "16b10Fa.wav": ("happiness", "16", "b10"),
    "16a02Tc.wav": ("sadness", "16", "a02"),
    "16a01Nb.wav": ("neutral", "16", "a01"),
}


def emodb_files(audio) -> dict[str, bytes]:
    files = {"erkennung.txt": b"recognition rates", "lablaut/03a01Wa.lablaut": b"labels"}
    files.update({f"wav/{n}": audio.wav(sr=16000, freq=200 + 50 * i) for i, n in enumerate(NAMES)})
    return files


def test_parse_name_follows_the_official_scheme():
    assert {code: parse_name(f"03a01{code}a.wav")[0] for code in "WLEAFTN"} == EMOTIONS
    assert parse_name("11b03Td.wav") == ("sadness", "11", "b03")
    for bad in ("03a01Xa.wav", "3a01Fa.wav", "03a01Fa.mp3", "notes.wav"):
        with pytest.raises(ValueError, match="not an EmoDB file name"):
            parse_name(bad)


def test_manifest_labels_groups_and_columns(server, audio, make_data, out_dir):
    server.files["/download/download.zip"] = audio.zip(emodb_files(audio))
    server.faults["/download/download.zip"] = ["503"]  # retried, then served
    entries = DATASETS["emodb"](
        make_data(emodb={"url": server.url("/download/download.zip")}), 0, out_dir
    )

    got = {e.path: (e.label, e.group, e.extra["text_id"]) for e in entries}
    assert got == {f"audio/{n}": v for n, v in EXPECTED.items()}
    assert all(e.extra["speaker"] == e.group and e.sample_rate == 16000 for e in entries)
    assert Counter(e.group for e in entries) == {"03": 2, "08": 2, "16": 3}
    assert sorted(p.name for p in (out_dir / "audio").iterdir()) == sorted(NAMES)  # only wav/


def test_checksum_mismatch_of_a_supplied_zip(audio, make_data, out_dir, tmp_path):
    (tmp_path / "download.zip").write_bytes(audio.zip(emodb_files(audio)))
    data = make_data(archive=str(tmp_path / "download.zip"), emodb={"sha256": "0" * 64})
    with pytest.raises(ChecksumError, match="data.archive for emodb"):
        DATASETS["emodb"](data, 0, out_dir)


def test_offline_error_names_the_url_and_data_archive(make_data, out_dir, offline_url):
    with pytest.raises(DownloadError) as err:
        DATASETS["emodb"](make_data(emodb={"url": offline_url}, retries=0), 0, out_dir)
    message = str(err.value)
    assert offline_url in message and "data.archive" in message


def test_extracted_folder_with_odd_files_listed(audio, make_data, out_dir, tmp_path, caplog):
    files = emodb_files(audio)
    files["wav/03a05Wa.wav"] = b"\x00" * 64  # truncated, not audio
    files["wav/03a05Xa.wav"] = audio.wav(sr=16000)  # unknown emotion code
    root = audio.tree(tmp_path / "emodb", files)
    entries = DATASETS["emodb"](make_data(archive=str(root)), 0, out_dir)

    assert len(entries) == len(NAMES)
    listed = {u["path"]: u["reason"] for u in json.loads((out_dir / "unreadable.json").read_text())}
    assert "cannot read audio header" in listed["audio/03a05Wa.wav"]
    assert "not an EmoDB file name" in listed["wav/03a05Xa.wav"]
    assert "2 files left out" in caplog.text
    assert json.loads((out_dir / "source.json").read_text())["archive_sha256"] is None


def test_missing_archive_path(make_data, out_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="data.archive"):
        DATASETS["emodb"](make_data(archive=str(tmp_path / "nowhere")), 0, out_dir)


def test_wrong_archive(audio, make_data, out_dir, tmp_path):
    (tmp_path / "a.txt").write_text("not a zip")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        DATASETS["emodb"](make_data(archive=str(tmp_path / "a.txt")), 0, out_dir)
