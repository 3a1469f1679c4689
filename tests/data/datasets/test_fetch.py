"""Resumable, verified, retried downloads against a real local HTTP server."""

import hashlib

import pytest

from audioclf.data.datasets.fetch import (
    ChecksumError,
    DownloadError,
    RefusedError,
    RetryPolicy,
    fetch_file,
    fetch_json,
    redact,
)

FAST = RetryPolicy(retries=3, backoff_s=0.001, timeout_s=5.0)
BLOB = bytes(range(256)) * 400  # 100 KiB, so "half" is well past the first read


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_publishes_only_the_complete_file(server, tmp_path):
    server.files["/a.zip"] = BLOB
    dest = fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, sha256=sha(BLOB))
    assert dest.read_bytes() == BLOB
    assert not (tmp_path / "a.zip.part").exists()


def test_checksum_mismatch_is_rejected_and_nothing_published(server, tmp_path):
    server.files["/a.zip"] = BLOB
    with pytest.raises(ChecksumError, match=r"expected 0{64}, got " + sha(BLOB)):
        fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, sha256="0" * 64)
    assert not (tmp_path / "a.zip").exists()
    assert not (tmp_path / "a.zip.part").exists()  # a bad .part would poison the next resume


def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.files["/a.zip"] = BLOB
    server.faults["/a.zip"] = ["truncate"]
    dest = fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, sha256=sha(BLOB))
    assert dest.read_bytes() == BLOB
    assert server.hits("/a.zip") == [None, f"bytes={len(BLOB) // 2}-"]


def test_an_interrupted_run_is_resumed_by_the_next_run(server, tmp_path):
    server.files["/a.zip"] = BLOB
    server.faults["/a.zip"] = ["truncate"]
    with pytest.raises(DownloadError, match="connection dropped after 51200 of 102400 bytes"):
        fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=RetryPolicy(retries=0))
    assert (tmp_path / "a.zip.part").stat().st_size == len(BLOB) // 2
    assert not (tmp_path / "a.zip").exists()
    fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, sha256=sha(BLOB))
    assert server.hits("/a.zip")[-1] == f"bytes={len(BLOB) // 2}-"
    assert (tmp_path / "a.zip").read_bytes() == BLOB


def test_a_server_ignoring_range_restarts_the_file(server, tmp_path):
    server.files["/a.zip"] = BLOB
    (tmp_path / "a.zip.part").write_bytes(BLOB[:1000])
    server.faults["/a.zip"] = ["ignore-range"]
    fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, sha256=sha(BLOB))
    assert (tmp_path / "a.zip").read_bytes() == BLOB  # not the first 1000 bytes twice


def test_a_whole_part_file_is_published_without_refetching(server, tmp_path):
    server.files["/a.zip"] = BLOB
    (tmp_path / "a.zip.part").write_bytes(BLOB)  # killed after the last byte, before the rename
    fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, sha256=sha(BLOB))
    assert (tmp_path / "a.zip").read_bytes() == BLOB
    assert server.hits("/a.zip") == [f"bytes={len(BLOB)}-"]  # answered 416 with the full length


def test_a_part_file_longer_than_the_file_restarts(server, tmp_path):
    server.files["/a.zip"] = BLOB
    (tmp_path / "a.zip.part").write_bytes(BLOB + b"junk")
    fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, sha256=sha(BLOB))
    assert (tmp_path / "a.zip").read_bytes() == BLOB
    assert server.hits("/a.zip") == [f"bytes={len(BLOB) + 4}-", None]


def test_a_complete_download_is_not_fetched_again(server, tmp_path):
    server.files["/a.zip"] = BLOB
    for _ in range(2):
        fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST)
    assert len(server.hits("/a.zip")) == 1


def test_rate_limit_and_server_errors_are_retried(server):
    server.api["/api"] = lambda q: {"ok": q["page"]}
    server.faults["/api"] = ["429", "503"]
    assert fetch_json(server.url("/api?page=2"), policy=FAST) == {"ok": "2"}
    assert len(server.hits("/api")) == 3


def test_retries_run_out_with_the_url_and_the_hint(server, tmp_path):
    server.files["/a.zip"] = BLOB
    server.faults["/a.zip"] = ["503"] * 10
    with pytest.raises(DownloadError) as err:
        fetch_file(server.url("/a.zip"), tmp_path / "a.zip", policy=FAST, hint="Set data.archive.")
    assert server.url("/a.zip") in str(err.value)
    assert "after 4 attempts" in str(err.value) and "Set data.archive." in str(err.value)
    assert len(server.hits("/a.zip")) == 4


def test_a_refusal_is_not_retried(server, tmp_path):
    with pytest.raises(RefusedError, match="HTTP 404") as err:
        fetch_file(server.url("/missing.zip"), tmp_path / "m.zip", policy=FAST)
    assert err.value.code == 404
    assert len(server.hits("/missing.zip")) == 1


def test_offline_is_retried_then_reported(tmp_path, offline_url):
    url = offline_url
    with pytest.raises(DownloadError, match="Connection refused") as err:
        fetch_file(url, tmp_path / "a.zip", policy=FAST)
    assert url in str(err.value)


def test_retry_after_is_honoured_but_capped():
    policy = RetryPolicy(retries=3, backoff_s=1.0)
    assert policy.delay(2, None) == 4.0
    assert policy.delay(0, "30") == 30.0
    assert policy.delay(0, "86400") == 300.0
    assert policy.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 2.0  # dates: fall back to backoff


def test_redact_hides_secrets_in_urls():
    url = "https://xeno-canto.org/api/3/recordings?query=gen:Parus&key=s3cret&page=2"
    assert redact(url) == "https://xeno-canto.org/api/3/recordings?query=gen:Parus&key=***&page=2"
    assert redact("http://host/a.zip") == "http://host/a.zip"
