"""``audioclf serve``: MLflow's scoring server for a model, with each request bounded.

MLflow's server (``mlflow models serve``) reads and parses a request's whole JSON body before the
model sees it, and nothing in it bounds that body: an hour of float samples is a 483 MB body
that parsing takes to about 9 GB. Its 504 (after ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``)
leaves the request's work running. This command serves the same application (MLflow's
``/invocations``, ``/ping``, ``/health`` and ``/version``, the model loaded with MLflow's
``MLFLOW_PYFUNC_INFERENCE_CONFIG``, the model's own per-request budgets) behind
:class:`RequestBounds`:

* a body larger than ``AUDIOCLF_SERVE_MAX_BODY_MB`` is refused with 413 before any of it is
  parsed (MLflow's own container does the same with nginx's ``client_max_body_size``);
* the model's deadline (``AUDIOCLF_SERVE_DEADLINE_S``) counts from the request's arrival, the
  reading and parsing of its body included, so that it ends before the server's timeout;
* once a request's client has gone, or the request has been answered (a 504 included), the work
  still running for it stops.

The default bound, 256 MB, takes an hour of 22.05-kHz mono 16-bit WAV as base64 (212 MB); on a
machine of less than 6 GB it is lowered to a twenty-fourth of the memory, what parsing a body of
float samples can take.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from audioclf.cli import parser
from audioclf.config.schema import memory_bytes
from audioclf.deploy.pyfunc import REQUEST, Request, positive_setting

log = logging.getLogger(__name__)

MAX_BODY_ENV = "AUDIOCLF_SERVE_MAX_BODY_MB"
DEFAULT_MAX_BODY_MB = 256.0
LINGER_S = 10.0  # seconds a refused body is read and dropped before the answer
PARSE_FACTOR = 24  # memory per byte of a float-samples JSON body while MLflow parses it (~19 seen)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def max_body_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """The body bound: ``AUDIOCLF_SERVE_MAX_BODY_MB`` where set, else 256 MB or, on a small
    machine, what parsing a body of float samples leaves room for."""
    default = DEFAULT_MAX_BODY_MB * 1e6
    memory = memory_bytes()
    if memory is not None:
        default = min(default, memory / PARSE_FACTOR)
    return int(positive_setting(environ, MAX_BODY_ENV, default / 1e6) * 1e6)


class RequestBounds:
    """ASGI middleware: an HTTP request whose body is larger than ``max_bytes`` is answered 413
    and never reaches ``app``; the others reach it with their :class:`Request`.

    A declared ``Content-Length`` above the bound is refused before any of the body is parsed or
    held (the HTTP server holds the client to the length it declared); a body sent in chunks is
    counted as it comes and refused once it passes the bound. Before the answer, the rest of the
    body is read and dropped for up to :data:`LINGER_S` seconds, as nginx's lingering close does,
    so that a client still sending it reads the 413 rather than a reset connection; a client that
    asked ``Expect: 100-continue`` is answered at once and sends nothing.

    Each request also gets a :class:`~audioclf.deploy.pyfunc.Request` (in
    :data:`~audioclf.deploy.pyfunc.REQUEST`): the model's deadline counts from its arrival, and
    once its client has gone or it has been answered (MLflow's 504 included), the work still
    running for it stops.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(arrived=time.monotonic(), abandoned=threading.Event())
        token = REQUEST.set(request)
        try:
            await self._bounded(scope, receive, send, request.abandoned)
        finally:  # answered (a 504 included): work still running for the request stops
            request.abandoned.set()
            REQUEST.reset(token)

    async def _bounded(
        self, scope: Scope, receive: Receive, send: Send, abandoned: threading.Event
    ) -> None:
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(scope, receive, send, declared)
            else:
                await self._serve(scope, receive, receive, send, abandoned)
            return
        messages, size = [], 0
        while True:  # chunked: hold the chunks up to the bound, then replay them to the app
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, size, declared=False)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def receive_again() -> Message:
            return next(replay, None) or await receive()

        await self._serve(scope, receive_again, receive, send, abandoned)

    async def _serve(
        self,
        scope: Scope,
        app_receive: Receive,
        client_receive: Receive,
        send: Send,
        abandoned: threading.Event,
    ) -> None:
        """Run the app; once it has the whole body, watch the client: gone, the work stops."""
        watcher: asyncio.Task | None = None

        async def watch() -> None:  # with the body in, the server's next message is the end
            if (await client_receive())["type"] == "http.disconnect":
                abandoned.set()

        async def receive_body() -> Message:
            nonlocal watcher
            message = await app_receive()
            if watcher is None and not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
            return message

        try:
            await self.app(scope, receive_body, send)
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, size: int, declared: bool = True
    ) -> None:
        if _header(scope, b"expect") != b"100-continue":
            try:
                await asyncio.wait_for(_drop_body(receive), LINGER_S)
            except TimeoutError:
                pass  # a slow sender: answer now, and the server closes the connection
        what = f"is {size / 1e6:.1f} MB, above" if declared else "passed"
        message = (
            f"the request body {what} the bound of {self.max_bytes / 1e6:g} MB "
            f"({MAX_BODY_ENV}): send shorter recordings per request, audio as audio_base64 "
            f"rather than samples, or raise {MAX_BODY_ENV} where the server has the memory"
        )
        body = json.dumps({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _drop_body(receive: Receive) -> None:
    """Read the rest of a request's body, keeping none of it."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.strip().lower()
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def app(model_uri: str, max_bytes: int) -> ASGIApp:
    """MLflow's scoring app for the model at ``model_uri`` (loaded with the model config in
    ``MLFLOW_PYFUNC_INFERENCE_CONFIG``, as ``mlflow models serve`` loads it), behind
    :class:`RequestBounds`."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(model_uri)
    return RequestBounds(scoring_server.init(model), max_bytes)


def main(argv: list[str] | None = None) -> None:
    """``audioclf serve``: a registered or logged model over HTTP, as ``mlflow models serve``
    serves it (the same endpoints and payload), with request bodies bounded by
    ``AUDIOCLF_SERVE_MAX_BODY_MB`` before they are parsed. One process; run several behind a
    load balancer for more.
    """
    ap = parser(main.__doc__, prog="audioclf serve", params=False)
    ap.add_argument("-m", "--model", required=True, help="model URI: models:/<name>/<version>, ...")
    ap.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    ap.add_argument(
        "-p", "--port", type=int, default=5001, help="the port to listen on (mlflow ui has 5000)"
    )
    args = ap.parse_args(argv)
    import uvicorn

    bound = max_body_bytes()  # a bad setting stops here, before the model is loaded
    served = app(args.model, bound)
    log.info(
        "serving %s on http://%s:%d; bodies up to %g MB",
        args.model,
        args.host,
        args.port,
        bound / 1e6,
    )
    uvicorn.run(served, host=args.host, port=args.port)
