"""What may be fetched, and what a message may show of a URL.

Only ``http``/``https`` URLs are fetched, and where a caller names the hosts it expects
(``allowed_hosts``), only those, redirects included (:class:`CheckedRedirects`): a server
cannot point a download at ``file://`` or at another machine. :func:`redact` hides the
values of secret-looking query parameters, :func:`scrub` a known secret in every form.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Collection

SECRET_PARAMS = frozenset({"key", "api_key", "apikey", "token", "access_token"})


class UrlRefused(Exception):
    """A URL that may not be fetched; the message says why."""


def scrub(text: str, secret: str) -> str:
    r"""``text`` with ``secret`` replaced by ``***`` in every form a URL or a server's echo may
    hold: raw, percent-encoded (either case of hex digits), form-encoded, encoded twice, and
    JSON-escaped (``\/``, ``\u002b``), or a mix of these.

    >>> scrub("GET /x?key=a%2Bb%2Fc failed: key a+b/c, a%2bb%2fc, a%252Bb%252Fc", "a+b/c")
    'GET /x?key=*** failed: key ***, ***, ***'
    >>> scrub('{"echo": "a+b\\/c"}', "a+b/c")
    '{"echo": "***"}'
    """
    if not secret:
        return text
    # character by character, so that a mix of forms (one character escaped, the next not)
    # is caught too; hex digits and \\u escapes come back in either case
    pattern = "".join(f"(?:{'|'.join(_forms(c))})" for c in secret)
    return re.sub(pattern, "***", text, flags=re.IGNORECASE)


def _forms(char: str) -> list[str]:
    """Regex alternatives for ``char`` as a URL, a form, a doubly-encoded URL or JSON may hold it."""
    once = urllib.parse.quote(char, safe="")
    forms = {
        char,
        once,
        urllib.parse.quote(once, safe=""),  # encoded twice
        urllib.parse.quote_plus(char),
        json.dumps(char)[1:-1],
        f"\\u{ord(char):04x}",
    }
    if char == "/":
        forms.add("\\/")  # JSON may escape the solidus
    return [re.escape(f) for f in sorted(forms, key=len, reverse=True)]


def check_url(url: str, allowed_hosts: Collection[str] | None) -> None:
    """Refuse anything but ``http``/``https``, and hosts other than ``allowed_hosts`` (and their
    subdomains) when given.

    Raises:
        UrlRefused: naming the URL (redacted) and what is allowed.
    """
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise UrlRefused(f"refusing to fetch {redact(url)}: only http(s) URLs are downloaded")
    if allowed_hosts is not None and not any(
        host == h or host.endswith("." + h) for h in (a.lower() for a in allowed_hosts)
    ):
        raise UrlRefused(
            f"refusing to fetch {redact(url)}: host {host!r} is not among {sorted(allowed_hosts)} "
            f"(extend the adapter's allowed hosts if it is genuine)"
        )


class CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL :func:`check_url` accepts."""

    def __init__(self, allowed_hosts: Collection[str] | None):
        self.allowed_hosts = allowed_hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl, self.allowed_hosts)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def redact(url: str) -> str:
    """``url`` with the values of secret-looking query parameters replaced by ``***``.

    >>> redact("https://xeno-canto.org/api/3/recordings?query=q:A&key=abc123&page=2")
    'https://xeno-canto.org/api/3/recordings?query=q:A&key=***&page=2'
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    pairs = [
        f"{name}=***" if name.lower() in SECRET_PARAMS else f"{name}={value}"
        for name, value in (p.partition("=")[::2] for p in parts.query.split("&"))
    ]
    return urllib.parse.urlunsplit(parts._replace(query="&".join(pairs)))
