"""A hostile API server: recording URLs of other schemes or hosts, redirects away, keys echoed back
encoded. Nothing is read from elsewhere and the key never reaches a message."""

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.fetch import DownloadError, RefusedError, RetryPolicy, fetch_file
from audioclf.data.datasets.urls import scrub
from audioclf.data.datasets.xenocanto import KEY_ENV

KEY = "xc+T0P/SECRET=5f3a"  # characters that percent-encode
POLICY = RetryPolicy(retries=0, backoff_s=0.0, timeout_s=5.0)


@pytest.fixture
def redirector():
    """A server on 127.0.0.1 whose /go?to=URL answers 302 to URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            target = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["to"][0]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield (
        lambda to: (
            f"http://127.0.0.1:{httpd.server_address[1]}/go?to={urllib.parse.quote(to, safe='')}"
        )
    )
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x.wav", "data:text/plain,hi", "/etc/passwd"]
)
def test_only_http_urls_are_fetched(tmp_path, url):
    with pytest.raises(RefusedError, match="only http\\(s\\) URLs are downloaded"):
        fetch_file(url, tmp_path / "x", policy=POLICY)
    assert not (tmp_path / "x").exists()


def test_hosts_outside_the_allow_list_are_refused_redirects_included(tmp_path, server, redirector):
    server.files["/a.wav"] = b"RIFF...."
    with pytest.raises(RefusedError, match="host 'localhost' is not among"):
        fetch_file(
            server.url("/a.wav").replace("127.0.0.1", "localhost"),
            tmp_path / "x",
            policy=POLICY,
            allowed_hosts=["127.0.0.1"],
        )
    for target in ("file:///etc/passwd", server.url("/a.wav").replace("127.0.0.1", "localhost")):
        with pytest.raises(RefusedError, match="refusing to fetch|is not allowed"):
            fetch_file(
                redirector(target), tmp_path / "y", policy=POLICY, allowed_hosts=["127.0.0.1"]
            )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    fetch_file(
        redirector(server.url("/a.wav")), tmp_path / "z", policy=POLICY, allowed_hosts=["127.0.0.1"]
    )
    assert (
        tmp_path / "z"
    ).read_bytes() == b"RIFF...."  # a redirect within the allowed hosts is followed


def test_a_secret_is_scrubbed_in_every_form():
    encoded = urllib.parse.quote(KEY, safe="")
    text = f"GET /api?key={encoded}&x=1 failed: server says key {KEY} / {urllib.parse.quote_plus(KEY)} bad"
    assert KEY not in scrub(text, KEY) and encoded not in scrub(text, KEY)
    assert scrub(text, KEY).count("***") == 3


def test_recordings_elsewhere_are_skipped_and_the_echoed_key_never_shows(
    server, audio, make_data, out_dir, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, KEY)
    server.files["/ok/download"] = audio.bytes("WAV", sr=22050, seconds=0.3)

    def rec(xc_id, file):
        return {
            "id": xc_id,
            "gen": "Parus",
            "sp": "major",
            "en": "",
            "rec": "r",
            "lic": "//x/",
            "q": "A",
            "file": file,
            "file-name": f"XC{xc_id}.wav",
            "url": "//xeno-canto.org/1",
        }

    records = [
        rec("1", server.url("/ok/download")),
        rec("2", "file:///etc/passwd"),
        rec("3", server.url("/ok/download").replace("127.0.0.1", "localhost")),
    ]
    server.api["/api/3/recordings"] = lambda q: {
        "numRecordings": "3",
        "numPages": 1,
        "page": 1,
        "recordings": records,
    }
    data = make_data(
        xenocanto={
            "api_url": server.url("/api/3/recordings"),
            "species": ["Parus major"],
            "allowed_hosts": [],
            "min_interval_s": 0.0,
        }
    )
    entries = DATASETS["xenocanto"](data, 0, out_dir)
    assert [e.group for e in entries] == ["XC1"]
    reasons = (out_dir / "unreadable.json").read_text()
    assert reasons.count("refusing to fetch") == 2
    assert not any(Path(out_dir).rglob("passwd"))

    def echo(q):  # an API that answers with an error page quoting the request, key and all
        raise AssertionError  # never called: the fault below answers first

    server.api["/api/3/recordings"] = echo
    server.faults["/api/3/recordings"] = ["403"]
    data = make_data(
        download_dir=str(out_dir.parent / "fresh-cache"),
        xenocanto={
            "api_url": server.url("/api/3/recordings"),
            "species": ["Parus major"],
            "min_interval_s": 0.0,
        },
    )
    with pytest.raises(DownloadError) as err:
        DATASETS["xenocanto"](data, 0, out_dir.parent / "raw2")
    message = str(err.value)
    assert KEY not in message and urllib.parse.quote(KEY, safe="") not in message
    assert urllib.parse.quote_plus(KEY) not in message
