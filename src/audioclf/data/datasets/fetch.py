"""HTTP downloads that survive flaky networks: resume, retry, verify, then publish.

A file is fetched onto ``<dest>.part`` with HTTP ``Range`` requests, so a dropped
connection (or a killed process) resumes where it stopped instead of starting over.
It is checked against its sha256 when one is known, and only then renamed to
``dest``: a file at ``dest`` is always complete. Rate limits (429), server errors
(5xx) and connection errors are retried with exponential backoff; anything else
fails at once. URLs are redacted (``key=...`` and similar) before they appear in a
message, and :func:`scrub` removes a known secret in every form it can take (raw,
percent-encoded, form-encoded), so API keys never reach logs or exceptions.

Only ``http``/``https`` URLs are fetched, and where a caller names the hosts it expects
(``allowed_hosts``), only those, redirects included: a server cannot point a download at
``file://`` or at another machine.

A server cannot hold a caller forever or fill its memory or disk: the socket timeout bounds
each read, a JSON answer must be complete within ``timeout_s`` in all (a watchdog shuts the
connection at that deadline, so a server that trickles one byte a second is cut off too; a
file download takes one with ``deadline_s``; one without, a large archive, is cut off when it
brings fewer than :data:`MIN_RATE` bytes a second over ``timeout_s`` and resumed by the next
attempt, as curl's ``--speed-limit`` does), and a caller may cap a body's size (``max_bytes``),
checked against ``Content-Length`` and counted while reading.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.error import HTTPError, URLError

from audioclf.data.datasets.urls import CheckedRedirects, UrlRefused, redact
from audioclf.data.datasets.urls import check_url as _check
from audioclf.data.manifest import sha256_file
from audioclf.errors import UserError, printable

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "audioclf/0.1 (dataset download)"
MAX_RETRY_AFTER_S = 300.0
CHUNK = 1 << 16
MIN_RATE = 1024  # bytes/s a file download must average over each timeout_s (a trickle is cut)

T = TypeVar("T")


class DownloadError(UserError, RuntimeError):
    """A URL could not be fetched (after retries, where retrying made sense)."""


class ChecksumError(DownloadError):
    """A downloaded or supplied file does not have the expected sha256."""


class TooLargeError(DownloadError):
    """The server sent (or announced) more bytes than the caller allows."""


class RefusedError(DownloadError):
    """The server answered with an HTTP status that retrying will not change (404, 401...)."""

    def __init__(self, message: str, code: int, content_range: str = ""):
        super().__init__(message)
        self.code = code
        self.content_range = content_range


class _Transient(Exception):
    """A failure worth retrying: rate limit, server error, dropped connection."""

    def __init__(self, reason: str, retry_after: str | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``retries`` extra attempts, waiting ``backoff_s * 2**k`` before the k-th."""

    retries: int = 4
    backoff_s: float = 2.0
    timeout_s: float = 60.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); honours ``Retry-After``."""
        wait = self.backoff_s * 2**attempt
        if retry_after and retry_after.strip().isdigit():
            wait = max(wait, min(float(retry_after), MAX_RETRY_AFTER_S))
        return wait


class Throttle:
    """Keeps at least ``min_interval_s`` between the starts of consecutive requests."""

    def __init__(self, min_interval_s: float):
        self.min_interval_s = min_interval_s
        self._last = -float("inf")

    def wait(self) -> None:
        pause = self._last + self.min_interval_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._last = time.monotonic()


def check_url(url: str, allowed_hosts: Collection[str] | None) -> None:
    """:func:`audioclf.data.datasets.urls.check_url`, refusing with :class:`RefusedError`."""
    try:
        _check(url, allowed_hosts)
    except UrlRefused as exc:
        raise RefusedError(str(exc), 0) from None


class _Deadline:
    """Shuts every socket a request opens once ``seconds`` have passed: a blocked read then
    ends at once, however slowly the server trickles its bytes. Used as a context manager
    around one attempt; :attr:`expired` says whether it fired."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire) if seconds else None

    def __enter__(self) -> _Deadline:
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def handlers(self) -> list[urllib.request.BaseHandler]:
        """urllib handlers whose connections register their sockets here."""
        deadline = self

        def watched(base: type[http.client.HTTPConnection]) -> type:
            class Watched(base):
                def connect(self):
                    super().connect()
                    deadline.watch(self.sock)

            return Watched

        class Http(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watched(http.client.HTTPConnection), req)

        class Https(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(
                    watched(http.client.HTTPSConnection), req, context=self._context
                )

        return [Http(), Https()]

    def check(self, what: str) -> None:
        """Raise a retryable failure if the deadline cut ``what`` short."""
        if self.expired:
            raise _Transient(f"no complete {what} within {self.seconds:g} s (data.timeout_s)")


def fetch_file(
    url: str,
    dest: Path,
    *,
    policy: RetryPolicy,
    sha256: str | None = None,
    throttle: Throttle | None = None,
    hint: str = "",
    allowed_hosts: Collection[str] | None = None,
    max_bytes: int | None = None,
    deadline_s: float | None = None,
) -> Path:
    """Download ``url`` to ``dest`` unless a complete copy is already there.

    Args:
        url: http(s) URL of the file.
        dest: final path; the partial download lives at ``dest`` + ``.part``.
        policy: retries, backoff and per-request timeout.
        sha256: expected hex digest, or None to skip verification.
        throttle: shared rate limiter for polite access to one host.
        hint: appended to error messages (how to supply the file by hand).
        allowed_hosts: the only hosts (and their subdomains) the URL and its redirects may
            name; None: any host, still http(s) only.
        max_bytes: the most bytes the file may have (None: no cap).
        deadline_s: seconds one attempt may take in all (None: only the per-read timeout).

    Returns:
        ``dest``.

    Raises:
        TooLargeError: the file is larger than ``max_bytes`` (the ``.part`` is deleted).
        ChecksumError: the complete file has another digest (the ``.part`` is deleted
            so that the next attempt starts afresh).
        DownloadError: the server refused the request, or retries ran out.
    """
    check_url(url, allowed_hosts)
    dest = Path(dest)
    if dest.is_file():
        verify_sha256(
            dest, sha256, f"cached download of {redact(url)}; delete it to download again. {hint}"
        )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    def attempt() -> None:
        with _Deadline(deadline_s) as deadline:
            _get_into(url, part, policy, allowed_hosts, max_bytes=max_bytes, deadline=deadline)

    try:
        _with_retries(attempt, url, policy, throttle, hint)
    except TooLargeError:
        part.unlink(missing_ok=True)
        raise
    try:
        verify_sha256(part, sha256, f"download of {redact(url)}. {hint}")
    except ChecksumError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def fetch_json(
    url: str,
    *,
    policy: RetryPolicy,
    throttle: Throttle | None = None,
    hint: str = "",
    allowed_hosts: Collection[str] | None = None,
    max_bytes: int | None = None,
) -> Any:
    """GET ``url`` and parse its JSON body, retrying transient failures (``allowed_hosts``: as
    for :func:`fetch_file`). Each attempt must be complete within ``policy.timeout_s``.

    Raises:
        TooLargeError: the body is longer than ``max_bytes`` (None: no cap).
    """
    check_url(url, allowed_hosts)

    def get() -> Any:
        with _Deadline(policy.timeout_s) as deadline:
            buf = bytearray()
            try:
                with _open(url, {}, policy, allowed_hosts, deadline) as resp:
                    _announced(resp, url, 0, max_bytes)
                    _copy(resp, buf.extend, url, max_bytes)
            except (OSError, http.client.HTTPException) as exc:
                deadline.check("response")
                raise _Transient(f"connection dropped while reading the response ({exc})") from None
            deadline.check("response")
        body = bytes(buf)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DownloadError(
                f"{redact(url)} did not return JSON ({exc}): "
                f"{printable(body[:200].decode('utf-8', 'replace'))}"
            ) from None

    return _with_retries(get, url, policy, throttle, hint)


def verify_sha256(path: Path, expected: str | None, what: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected`` (None: no check)."""
    if expected is None:
        return
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"sha256 mismatch for {path} ({what}): expected {expected.lower()}, got {actual}"
        )


def _with_retries(
    call: Callable[[], T], url: str, policy: RetryPolicy, throttle: Throttle | None, hint: str
) -> T:
    for attempt in range(policy.retries + 1):
        if throttle is not None:
            throttle.wait()
        try:
            return call()
        except RefusedError as exc:
            raise RefusedError(f"{exc}. {hint}".rstrip(), exc.code) from None
        except _Transient as exc:
            last = exc
            if attempt < policy.retries:
                time.sleep(policy.delay(attempt, exc.retry_after))
    raise DownloadError(
        f"could not fetch {redact(url)} after {policy.retries + 1} attempts "
        f"(last error: {last}). {hint}".rstrip()
    )


def _announced(resp: http.client.HTTPResponse, url: str, have: int, max_bytes: int | None) -> None:
    """Refuse a body whose ``Content-Length`` (after ``have`` bytes) is above ``max_bytes``."""
    length = resp.headers.get("Content-Length", "")
    if max_bytes is not None and length.isdigit() and have + int(length) > max_bytes:
        raise TooLargeError(
            f"{redact(url)} announces {have + int(length):,} bytes, more than the "
            f"{max_bytes:,} allowed"
        )


def _copy(
    resp: http.client.HTTPResponse,
    write: Callable[[bytes], Any],
    url: str,
    max_bytes: int | None,
    have: int = 0,
    min_rate_over_s: float | None = None,
) -> int:
    """Copy the body to ``write`` as it arrives (``read1``: whatever one read gives, so a
    trickle is never waited on for a whole block); returns the bytes copied.

    Raises:
        TooLargeError: ``have`` plus the body passes ``max_bytes``, before that block is written.
        _Transient: fewer than :data:`MIN_RATE` bytes a second came over ``min_rate_over_s``.
    """
    copied, since, window = 0, time.monotonic(), 0
    while block := resp.read1(CHUNK):
        copied += len(block)
        if max_bytes is not None and have + copied > max_bytes:
            raise TooLargeError(f"{redact(url)} sent more than the {max_bytes:,} bytes allowed")
        write(block)
        window += len(block)
        elapsed = time.monotonic() - since
        if min_rate_over_s is not None and elapsed >= min_rate_over_s:
            if window < MIN_RATE * elapsed:
                raise _Transient(
                    f"{window:,} bytes in {elapsed:.0f} s, below {MIN_RATE} bytes/s "
                    f"(data.timeout_s); resuming after {have + copied:,} bytes"
                )
            since, window = time.monotonic(), 0
    return copied


def _open(
    url: str,
    headers: dict[str, str],
    policy: RetryPolicy,
    allowed_hosts: Collection[str] | None,
    deadline: _Deadline | None = None,
) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    handlers = deadline.handlers() if deadline is not None else []
    opener = urllib.request.build_opener(CheckedRedirects(allowed_hosts), *handlers)
    try:
        return opener.open(request, timeout=policy.timeout_s)
    except UrlRefused as exc:  # a redirect to a URL that may not be fetched
        raise RefusedError(str(exc), 0) from None
    except HTTPError as exc:  # before URLError/OSError: it subclasses both
        if exc.code in RETRY_STATUS:
            raise _Transient(
                f"HTTP {exc.code} {exc.reason}", exc.headers.get("Retry-After")
            ) from None
        detail = _error_detail(exc)
        raise RefusedError(
            f"{redact(url)} answered HTTP {exc.code} {exc.reason}{detail}",
            exc.code,
            exc.headers.get("Content-Range", ""),
        ) from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        if deadline is not None:
            deadline.check("answer")
        raise _Transient(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None


def _error_detail(exc: HTTPError) -> str:
    """The server's own explanation (APIs put one in the body), shortened."""
    try:
        body = exc.read(2000).decode("utf-8", "replace")
    except OSError:
        return ""
    text = re.sub(r"\s+", " ", printable(body)).strip()
    return f": {text[:300]}" if text else ""


def _get_into(
    url: str,
    part: Path,
    policy: RetryPolicy,
    allowed_hosts: Collection[str] | None = None,
    *,
    max_bytes: int | None = None,
    deadline: _Deadline | None = None,
) -> None:
    """One attempt: append the rest of ``url`` to ``part`` (the whole file if ``part`` is empty)."""
    have = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(
            url, {"Range": f"bytes={have}-"} if have else {}, policy, allowed_hosts, deadline
        )
    except RefusedError as exc:
        if have and exc.code == 416 and exc.content_range == f"bytes */{have}":
            return  # nothing left to fetch: the .part is already whole
        if have and exc.code == 416:  # range not satisfiable: this .part cannot be resumed
            part.unlink()
            raise _Transient(f"server refused to resume at byte {have}; restarting") from None
        raise
    with resp:
        content_range = resp.headers.get("Content-Range", "")
        if have and not (resp.status == 206 and content_range.startswith(f"bytes {have}-")):
            have = 0  # the server ignored the Range header: it is sending the whole file
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length and length.isdigit() else None
        _announced(resp, url, have, max_bytes)
        with open(part, "ab" if have else "wb") as fh:
            try:
                _copy(resp, fh.write, url, max_bytes, have, policy.timeout_s)
            except (OSError, http.client.HTTPException) as exc:
                if deadline is not None:
                    deadline.check("file")
                raise _Transient(f"connection dropped after {fh.tell()} bytes ({exc})") from None
            size = fh.tell()
    if deadline is not None:
        deadline.check("file")
    # http.client reports a body cut short as a normal end of file: compare lengths
    if expected is not None and size < expected:
        raise _Transient(f"connection dropped after {size} of {expected} bytes")
