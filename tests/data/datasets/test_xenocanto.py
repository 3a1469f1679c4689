"""Xeno-canto adapter against a fake API v3 (JSON pages) and MP3 files on a local server."""

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import soundfile as sf

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.fetch import DownloadError
from audioclf.data.datasets.xenocanto import KEY_ENV

KEY = "xc-T0PSECRET-5f3a9c"
API = "/api/3/recordings"
SPECIES = {"Parus major": ("101", "102", "103"), "Turdus merula": ("201",)}


def record(server, xc_id: str, name: str, ext: str = "mp3") -> dict:
    gen, sp = name.split()
    return {
        "id": xc_id,
        "gen": gen,
        "sp": sp,
        "ssp": "",
        "grp": "birds",
        "en": f"{name} (en)",
        "rec": f"Recordist {xc_id}",
        "cnt": "Netherlands",
        "lic": "//creativecommons.org/licenses/by-nc-sa/4.0/",
        "q": "A",
        "length": "0:01",
        "file": server.url(f"/{xc_id}/download"),
        "file-name": f"XC{xc_id}-{sp}.{ext}",
        "url": f"//xeno-canto.org/{xc_id}",
    }


@pytest.fixture
def xc(server, audio, monkeypatch):
    """A fake Xeno-canto: one recording per page, so paging is exercised."""
    records = [
        record(server, i, name, "wav" if i == "201" else "mp3")
        for name, ids in SPECIES.items()
        for i in ids
    ]
    records.append({**record(server, "104", "Parus major"), "file": ""})  # restricted: no file
    for r in records:
        fmt = "WAV" if r["file-name"].endswith(".wav") else "MP3"
        server.files[f"/{r['id']}/download"] = audio.bytes(
            fmt, sr=22050, seconds=0.3, freq=900 + int(r["id"])
        )

    def api(q):
        m = re.match(r"gen:(\w+) sp:(\w+)", q["query"])
        found = [r for r in records if m is None or (r["gen"], r["sp"]) == m.groups()]
        page = int(q.get("page", 1))
        return {
            "numRecordings": str(len(found)),
            "numSpecies": "1",
            "page": page,
            "numPages": max(1, len(found)),
            "recordings": found[page - 1 : page],
        }

    server.api[API] = api
    monkeypatch.setenv(KEY_ENV, KEY)
    return server


def api_calls(server) -> list[dict[str, str]]:
    return [
        {k: v[0] for k, v in parse_qs(urlsplit(p).query).items()}
        for p, _ in server.requests
        if urlsplit(p).path == API
    ]


def data_for(server, make_data, **xenocanto):
    return make_data(
        xenocanto={
            "api_url": server.url(API),
            "species": list(SPECIES),
            "max_per_species": 2,
            "per_page": 50,
            "min_interval_s": 0.0,
            **xenocanto,
        }
    )


def test_manifest_labels_groups_licences(xc, make_data, out_dir):
    xc.faults[API] = ["429", "503"]  # rate-limited, then a server error: both retried
    entries = DATASETS["xenocanto"](data_for(xc, make_data), 0, out_dir)

    assert [(e.label, e.group) for e in entries] == [
        ("Parus major", "XC101"),
        ("Parus major", "XC102"),
        ("Turdus merula", "XC201"),
    ]
    first = entries[0]
    assert first.path == "audio/Parus_major/XC101.mp3"
    assert first.extra == {
        "licence": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
        "recordist": "Recordist 101",
        "quality": "A",
        "url": "https://xeno-canto.org/101",
    }
    assert entries[2].path.endswith("XC201.wav")
    info = sf.info(str(out_dir / first.path))  # MP3 decodes through libsndfile
    assert (info.format, info.samplerate, first.sample_rate) == ("MP3", 22050, 22050)
    assert first.duration > 0.25

    calls = api_calls(xc)
    assert all(c["key"] == KEY and c["per_page"] == "50" for c in calls)
    parus = [c["page"] for c in calls if c["query"] == "gen:Parus sp:major q:A"]
    assert parus == ["1", "1", "1", "2"]  # 429, 503, then page 1; stops once 2 are chosen


def test_the_key_is_never_written(xc, make_data, out_dir, tmp_path):
    DATASETS["xenocanto"](data_for(xc, make_data), 0, out_dir)
    assert api_calls(xc)  # the key did go to the API...
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "queries" in p.parts for p in written)
    assert [p for p in written if KEY.encode() in p.read_bytes()] == []  # ...and nowhere else


def test_rerun_needs_neither_network_nor_key(xc, make_data, tmp_path, monkeypatch):
    data = data_for(xc, make_data)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    first = DATASETS["xenocanto"](data, 0, tmp_path / "a")
    n_requests = len(xc.requests)
    monkeypatch.delenv(KEY_ENV)
    again = DATASETS["xenocanto"](data, 0, tmp_path / "b")
    assert len(xc.requests) == n_requests
    assert [(e.path, e.sha256) for e in again] == [(e.path, e.sha256) for e in first]


def test_missing_key_says_where_to_put_it(xc, make_data, out_dir, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(DownloadError, match=f"environment variable {KEY_ENV}"):
        DATASETS["xenocanto"](data_for(xc, make_data), 0, out_dir)
    assert xc.requests == []


@pytest.mark.parametrize(
    "faults, expected", [(["403"], "HTTP 403"), (["503"] * 9, "after 4 attempts")]
)
def test_api_errors_are_scrubbed_of_the_key(xc, make_data, out_dir, faults, expected):
    xc.faults[API] = faults
    with pytest.raises(DownloadError) as err:
        DATASETS["xenocanto"](data_for(xc, make_data), 0, out_dir)
    message = str(err.value)
    assert expected in message and "key=***" in message and xc.url(API) in message
    assert KEY not in message and err.value.__cause__ is None and err.value.__suppress_context__


def test_raw_query_caps_per_species_and_in_all(xc, make_data, out_dir):
    data = data_for(
        xc,
        make_data,
        species=[],
        query="cnt:Netherlands",
        quality=None,
        max_per_species=1,
        max_recordings=2,
    )
    entries = DATASETS["xenocanto"](data, 0, out_dir)
    assert [(e.label, e.group) for e in entries] == [
        ("Parus major", "XC101"),
        ("Turdus merula", "XC201"),
    ]
    assert {c["query"] for c in api_calls(xc)} == {"cnt:Netherlands"}


def test_undecodable_and_withdrawn_recordings_are_listed(xc, make_data, out_dir):
    xc.files["/102/download"] = b"<html>not audio</html>"
    del xc.files["/201/download"]  # 404
    entries = DATASETS["xenocanto"](data_for(xc, make_data), 0, out_dir)
    assert [e.group for e in entries] == ["XC101"]
    reasons = {
        u["path"]: u["reason"] for u in json.loads((out_dir / "unreadable.json").read_text())
    }
    assert "cannot read audio header" in reasons["audio/Parus_major/XC102.mp3"]
    assert "HTTP 404" in reasons["XC201"]
