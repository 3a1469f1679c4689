"""``audioclf serve``'s body bound, in-process: what reaches the app and what is refused unread
(the server on 127.0.0.1 is in test_pyfunc.py)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from audioclf.deploy import serve
from audioclf.deploy.pyfunc import REQUEST
from audioclf.deploy.serve import RequestBounds, max_body_bytes
from audioclf.errors import UserError


def _call(chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[list, list, int]:
    """Run a request with body ``chunks`` through ``RequestBounds(app, 100)``: (bodies the app read,
    messages sent back, chunks taken from the client)."""
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    taken, read, sent = [], [], []

    async def receive():
        if len(taken) == len(incoming):  # the body is in: a server then waits for the client
            await asyncio.Event().wait()
        taken.append(incoming[len(taken)])
        return taken[-1]

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message["body"], message.get("more_body", False)
        read.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    asyncio.run(RequestBounds(app, 100)(scope, receive, send))
    return read, sent, len(taken)


def test_a_body_within_the_bound_reaches_the_app_whole_declared_or_chunked():
    chunks = [b"a" * 40, b"b" * 40, b"c" * 20]
    read, sent, _ = _call(chunks, [(b"content-length", b"100")])
    assert read == [b"".join(chunks)] and sent[0]["status"] == 200
    read, sent, _ = _call(chunks, [(b"transfer-encoding", b"chunked")])
    assert read == [b"".join(chunks)] and sent[0]["status"] == 200  # held, then replayed


def test_a_body_past_the_bound_is_refused_and_never_reaches_the_app():
    read, sent, taken = _call([b"x" * 60] * 3, [(b"content-length", b"180")])
    assert read == [] and sent[0]["status"] == 413
    assert taken == 3  # read and dropped before the answer: the sender then reads the 413
    _, sent, taken = _call(
        [b"x" * 180], [(b"content-length", b"180"), (b"expect", b"100-continue")]
    )
    assert taken == 0 and sent[0]["status"] == 413  # asked first: answered before it sends
    answer = json.loads(sent[1]["body"])
    assert answer["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert answer["message"].startswith("the request body is 0.0 MB, above the bound of 0.0001 MB")
    assert "(AUDIOCLF_SERVE_MAX_BODY_MB)" in answer["message"]
    read, sent, taken = _call([b"x" * 60] * 5, [(b"transfer-encoding", b"chunked")])
    assert read == [] and taken == 5 and sent[0]["status"] == 413


def test_the_bound_is_the_setting_else_256_mb_or_what_a_small_machine_parses(monkeypatch):
    assert max_body_bytes({"AUDIOCLF_SERVE_MAX_BODY_MB": "1.5"}) == 1_500_000
    monkeypatch.setattr(serve, "memory_bytes", lambda: 64 * 10**9)
    assert max_body_bytes({}) == 256_000_000
    monkeypatch.setattr(serve, "memory_bytes", lambda: 2.4 * 10**9)  # a 2.4-GB machine
    assert max_body_bytes({}) == 100_000_000
    with pytest.raises(UserError, match="AUDIOCLF_SERVE_MAX_BODY_MB must be a positive number"):
        max_body_bytes({"AUDIOCLF_SERVE_MAX_BODY_MB": "-1"})


def test_each_request_carries_its_arrival_into_the_scoring_thread_and_is_let_go_after():
    seen, received = [], []

    async def app(scope, receive, send):
        await receive()
        seen.append(await asyncio.to_thread(REQUEST.get))  # as MLflow's server runs the model
        seen.append(seen[0].abandoned.is_set())
        await send({"type": "http.response.start", "status": 504, "headers": []})

    async def receive():
        if received:  # the body is in: a server then waits for the client
            await asyncio.Event().wait()
        received.append(True)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        pass

    before = time.monotonic()
    scope = {"type": "http", "headers": [(b"content-length", b"2")]}
    asyncio.run(RequestBounds(app, 100)(scope, receive, send))
    request, abandoned_while_working = seen
    assert before <= request.arrived <= time.monotonic() and not abandoned_while_working
    assert request.abandoned.is_set()  # answered (here a 504): what still runs for it stops
    assert REQUEST.get() is None


def test_a_client_gone_while_its_request_is_worked_on_stops_the_work():
    async def run() -> tuple[bool, float]:
        gone = asyncio.Event()
        sent = iter([{"type": "http.request", "body": b"{}", "more_body": False}])

        async def receive():
            message = next(sent, None)
            if message is None:  # the body is in: the next message is the client leaving
                await gone.wait()
                return {"type": "http.disconnect"}
            return message

        async def send(message):
            pass

        async def app(scope, receive, send):
            await receive()
            request = REQUEST.get()
            asyncio.get_running_loop().call_later(0.1, gone.set)  # the client hangs up
            start = time.monotonic()
            stopped = await asyncio.to_thread(request.abandoned.wait, 10)  # as the model works
            seen.append((stopped, time.monotonic() - start))

        seen = []
        scope = {"type": "http", "headers": [(b"content-length", b"2")]}
        await RequestBounds(app, 100)(scope, receive, send)
        return seen[0]

    stopped, waited = asyncio.run(run())
    assert stopped and waited < 5  # told within moments, not at the 10-s wait's end
