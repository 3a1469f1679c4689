"""A Xeno-canto server that cannot be trusted: it trickles, sends endless or oversized bodies,
claims a billion pages, fails one recording, lists one twice, and echoes the key in odd
encodings. The stage stays bounded in time, memory and requests, and keeps the good records."""

import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.fetch import DownloadError, RetryPolicy, fetch_file, fetch_json
from audioclf.data.datasets.urls import scrub
from audioclf.data.datasets.xenocanto import KEY_ENV

KEY = "xc+T0P/SECRET=5f3a"
API = "/api/3/recordings"
ONCE = RetryPolicy(retries=0, backoff_s=0.0, timeout_s=1.0)
PAGE_CAP = 32 << 20  # xenocanto.MAX_PAGE_BYTES


@pytest.fixture
def raw_server():
    """A server on 127.0.0.1 whose ``routes[path](handler)`` writes the whole answer itself."""
    routes = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            try:
                routes[urllib.parse.urlsplit(self.path).path](self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up, as it should

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield routes, lambda path: f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    httpd.shutdown()
    httpd.server_close()


def _trickle(h, data: bytes, every_s: float = 0.1) -> None:
    for i in range(len(data)):
        h.wfile.write(data[i : i + 1])
        h.wfile.flush()
        time.sleep(every_s)


def test_a_trickling_server_is_cut_off_at_the_deadline(raw_server, tmp_path):
    """One byte every 0.1 s never trips a 1-s read timeout; the 1-s deadline stops it."""
    routes, url = raw_server
    body = json.dumps({"recordings": [], "pad": "x" * 40}).encode()  # 6 s at this pace

    def slow_body(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        _trickle(h, body)

    def slow_headers(h):
        _trickle(h, b"HTTP/1.0 200 OK\r\nX-Slow: " + b"x" * 60 + b"\r\n\r\n{}")

    routes.update({"/body": slow_body, "/headers": slow_headers, "/file": slow_body})
    for path in ("/body", "/headers"):
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"no complete (response|answer) within 1 s"):
            fetch_json(url(path), policy=ONCE)
        assert time.monotonic() - start < 3, path
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"no complete file within 1 s"):
        fetch_file(url("/file"), tmp_path / "f", policy=ONCE, deadline_s=1.0)
    assert time.monotonic() - start < 3


def test_a_file_without_a_deadline_is_cut_below_the_rate_floor_and_resumed(raw_server, tmp_path):
    """An archive download has no total deadline (it may be large); 10 bytes every 0.1 s passes
    every read timeout, but not the 1 KB/s floor over timeout_s: each attempt is cut and the next
    resumes where it stopped."""
    routes, url = raw_server
    body = b"z" * 4000
    starts = []

    def slow_file(h):
        start = int(h.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        starts.append(start)
        h.send_response(206 if start else 200)
        h.send_header("Content-Length", str(len(body) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.end_headers()
        for i in range(start, len(body), 10):
            h.wfile.write(body[i : i + 10])
            h.wfile.flush()
            time.sleep(0.1)

    routes["/archive.zip"] = slow_file
    start = time.monotonic()
    policy = RetryPolicy(retries=1, backoff_s=0.0, timeout_s=1.0)
    with pytest.raises(DownloadError, match=r"bytes in 1 s, below 1024 bytes/s \(data.timeout_s\)"):
        fetch_file(url("/archive.zip"), tmp_path / "archive.zip", policy=policy)
    assert time.monotonic() - start < 6  # two attempts of about 1 s, not 40 s of trickle
    assert len(starts) == 2 and 0 < starts[1] < len(body)  # the second resumed, with Range
    assert (tmp_path / "archive.zip.part").stat().st_size > starts[1]  # kept for the next run
    assert not (tmp_path / "archive.zip").exists()


def _rec(server, xc_id: str, name: str = "Parus major", length: str = "0:01", **kw) -> dict:
    gen, sp = name.split()
    return {
        "id": xc_id,
        "gen": gen,
        "sp": sp,
        "en": "",
        "rec": "r",
        "lic": "//x/",
        "q": "A",
        "length": length,
        "file": server.url(f"/{xc_id}/download"),
        "file-name": f"XC{xc_id}.wav",
        "url": f"//xeno-canto.org/{xc_id}",
        **kw,
    }


def _data(make_data, api_url: str, **xenocanto):
    return make_data(
        retries=1,
        xenocanto={
            "api_url": api_url,
            "species": ["Parus major"],
            "min_interval_s": 0.0,
            "allowed_hosts": [],
            **xenocanto,
        },
    )


def test_an_endless_page_is_cut_at_its_cap(raw_server, make_data, out_dir, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    routes, url = raw_server

    def endless(h):  # no Content-Length: the body ends when the server hangs up
        h.send_response(200)
        h.end_headers()
        h.wfile.write(b'{"numPages": 1, "recordings": []' + b" " * (PAGE_CAP + (1 << 20)))
        h.wfile.write(b"}")

    routes[API] = endless
    with pytest.raises(DownloadError, match="sent more than the 33,554,432 bytes allowed"):
        DATASETS["xenocanto"](_data(make_data, url(API)), 0, out_dir)


def test_a_billion_pages_are_not_all_read(server, make_data, out_dir, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    restricted = {**_rec(server, "1"), "file": ""}  # never chosen: the query never fills up

    def api(q):
        if len(server.hits(API)) > 200:  # the code before the bound would go on for ever
            raise AssertionError("paged past any bound")
        return {"numPages": 10**9, "page": int(q["page"]), "recordings": [restricted]}

    server.api[API] = api
    with pytest.raises(DownloadError, match="returned no recordings"):
        DATASETS["xenocanto"](_data(make_data, server.url(API)), 0, out_dir)
    assert len(server.hits(API)) == 50  # xenocanto.max_pages(1000 recordings, 100 a page)


def test_bad_recordings_are_skipped_and_listed_and_duplicates_kept_once(
    server, audio, make_data, out_dir, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, KEY)
    good = audio.bytes("WAV", sr=22050, seconds=0.3)
    server.files["/1/download"] = good
    server.files["/2/download"] = good[:44] + bytes(8 << 20)  # "2 s" that is 8 MB
    server.files["/3/download"] = good  # fails on every attempt
    server.faults["/3/download"] = ["503", "503"]
    server.files["/4/download"] = audio.bytes("WAV", sr=22050, seconds=0.3, freq=900.0)
    pages = {
        "gen:Parus sp:major q:A": [_rec(server, "1"), _rec(server, "2", length="0:02")],
        "gen:Turdus sp:merula q:A": [
            _rec(server, "3", "Turdus merula"),
            _rec(server, "1"),  # the same recording again, from the second query
            _rec(server, "4", "Turdus merula"),
        ],
    }
    server.api[API] = lambda q: {"numPages": 1, "page": 1, "recordings": pages[q["query"]]}
    data = _data(make_data, server.url(API), species=["Parus major", "Turdus merula"])
    entries = DATASETS["xenocanto"](data, 0, out_dir)
    assert [(e.group, e.label) for e in entries] == [
        ("XC1", "Parus major"),
        ("XC4", "Turdus merula"),
    ]
    reasons = {
        u["path"]: u["reason"] for u in json.loads((out_dir / "unreadable.json").read_text())
    }
    assert set(reasons) == {"XC2", "XC3"}
    assert "more than the 2,584,576 allowed" in reasons["XC2"]
    assert "after 2 attempts" in reasons["XC3"]
    assert not (tmp := list(out_dir.rglob("XC2.*"))), tmp


def test_the_key_echoed_in_any_encoding_never_shows(server, make_data, out_dir, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    once = urllib.parse.quote(KEY, safe="")
    echoes = [
        once.lower(),  # xc%2bt0p%2fsecret%3d5f3a
        urllib.parse.quote(once, safe=""),  # encoded twice
        json.dumps({"key": KEY}).replace("/", "\\/"),  # JSON-escaped solidus
        json.dumps({"key": KEY}, ensure_ascii=True).replace("+", "\\u002b"),
    ]

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (" | ".join(echoes) + " " + self.path).encode()
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        api = f"http://127.0.0.1:{httpd.server_address[1]}{API}"
        with pytest.raises(DownloadError) as err:
            DATASETS["xenocanto"](_data(make_data, api), 0, out_dir)
    finally:
        httpd.shutdown()
        httpd.server_close()
    message = str(err.value)
    assert "403" in message and "***" in message
    for form in (*echoes, KEY, once, "SECRET", "secret"):
        assert form not in message, form
    assert scrub("k=XC%2Bt0p%2FSECRET%3D5F3A", KEY) == "k=***"


def test_a_dead_server_stops_the_stage_after_a_few_recordings(
    server, make_data, out_dir, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, KEY)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    recs = [{**_rec(server, str(i)), "file": f"{dead}/{i}/download"} for i in range(1, 30)]
    server.api[API] = lambda q: {"numPages": 1, "page": 1, "recordings": recs}
    with pytest.raises(DownloadError, match="5 recordings in a row could not be fetched"):
        DATASETS["xenocanto"](_data(make_data, server.url(API), max_per_species=50), 0, out_dir)
