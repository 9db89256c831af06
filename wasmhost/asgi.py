"""An ASGI 3 application serving a wasi:http component, to mount in any ASGI server or framework.

``ComponentApp`` translates one ASGI ``http`` exchange into the front end's ``Request`` and
``Response`` and hands them to ``ComponentHandler`` unchanged. The ASGI server owns the socket
(parsing, keep-alive, HEAD bodies, ``100-continue``); this side keeps what the guest needs: the
body is received only as fast as the guest reads it, ``send`` waits for a slow client, the mount
prefix (``root_path``) is taken off the path the guest sees, and the limits on body size and
time to the response start are answered as the front end does (413, 504, 500 on a trap).

Trailers: the guest's response trailers are sent where the server offers the ASGI
``http.response.trailers`` extension (and, as on the wire, only after a body of unknown length).
ASGI has no way to pass request trailers, so the guest sees none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from .host import Host
from .http.exchange import BodyError, Request, RequestBody, Response
from .http.limits import HttpLimits
from .module import Module
from .wasip2.handler import ComponentHandler

log = logging.getLogger("wasmhost.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ComponentApp:
    """``ComponentApp(module)`` is an ASGI application answering every request with the component.

    ``host`` gives the guest its capabilities, ``reuse`` how many requests one instance may serve
    (1: a fresh instance per request), ``limits`` the body size (413), the time to the response
    start (504), the request body read ahead of the guest, and how long a body may stall. Mounted
    inside a framework, the app gets no lifespan events: call ``await app.close()`` at shutdown.
    """

    def __init__(self, module: Module, host: Host | None = None, *, reuse: int = 1, pool: int = 2,
                 limits: HttpLimits | None = None) -> None:  # fmt: skip
        self.handler = ComponentHandler.for_host(module, host if host is not None else Host(), pool=pool, reuse=reuse)
        self.limits = limits if limits is not None else HttpLimits()

    async def close(self) -> None:
        await self.handler.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            raise ValueError(f"wasmhost ComponentApp: unsupported ASGI scope type {scope['type']!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Fill the instance pool at startup, and release every instance at shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.handler.warm()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, receiver = _request(scope, receive, self.limits)
        too_large = f"request body over {self.limits.max_body_bytes} bytes"
        declared = _content_length(request)
        if declared is not None and declared > self.limits.max_body_bytes:
            await _refuse(request, send, 413, too_large)
            return
        offers_trailers = "http.response.trailers" in (scope.get("extensions") or {})
        response = _AsgiResponse(send, offers_trailers and request.method != "HEAD" and request.http_version != "1.0")
        call = asyncio.ensure_future(self.handler(request, response))
        started = asyncio.ensure_future(response.head_sent.wait())
        try:
            deadline = self.limits.request_timeout
            await asyncio.wait([call, started], timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
            if not (call.done() or started.done()):
                await _refuse(request, send, 504, f"no response within {deadline:g}s")
                return
            try:
                await call
            except Exception as exc:  # noqa: BLE001 - a trap or a broken body is answered, and the app goes on
                if response.started:
                    log.warning("%s: %s %s: %s; response cut short", request.peer, request.method,
                                request.target, _summary(exc))  # fmt: skip
                    return  # the ASGI server closes a connection whose response did not end
                if receiver.too_large:
                    await _refuse(request, send, 413, too_large)
                else:
                    await _refuse(request, send, 500, "the handler failed", _summary(exc))
                return
            if not response.started:
                await _refuse(request, send, 500, "handler returned without a response")
                return
            await response.end()
        finally:
            for task in (started, call):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            receiver.stop()


class _Receiver:
    """The request body's source: ``receive()`` is awaited only while less than ``buffer_bytes``
    wait for the guest, so a guest that reads slowly slows the client down."""

    def __init__(self, receive: Receive, limits: HttpLimits) -> None:
        self._receive = receive
        self._limits = limits
        self.body = RequestBody(self, limits.idle_timeout)
        self._task: asyncio.Task[None] | None = None
        self._received = 0
        self._ended = False
        self.too_large = False

    def want_body(self, buffered: int) -> None:
        if self._task is None and not self._ended and buffered < self._limits.buffer_bytes:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while not self._ended and self.body.buffered < self._limits.buffer_bytes:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._end(BodyError("the client closed the connection"))
                    return
                data: bytes = message.get("body", b"")
                self._received += len(data)
                if self._received > self._limits.max_body_bytes:
                    self.too_large = True
                    self._end(BodyError(f"request body over {self._limits.max_body_bytes} bytes"))
                    return
                if data:
                    self.body.feed(data)
                if not message.get("more_body", False):
                    self._end(None)
        finally:
            self._task = None

    def _end(self, error: BodyError | None) -> None:
        self._ended = True
        if error is None:
            self.body.finish()
        else:
            self.body.fail(error)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class _AsgiResponse(Response):
    """The response as ASGI messages; ``send`` returns once the server has taken the data (after
    waiting for a slow client, in servers that apply backpressure). ``trailers``: the server
    takes response trailers for this request."""

    def __init__(self, send: Send, trailers: bool) -> None:  # the h11 connection of the base class is not used
        self._send = send
        self._may_trail = trailers
        self._trailing = False
        self.head_sent = asyncio.Event()

    async def _send_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        self.head_sent.set()
        start: Message = {"type": "http.response.start", "status": status, "headers": fields}
        if self._may_trail:
            # Whether the guest ends with trailers is known only at the end: a body of unknown
            # length announces them, and an empty set ends it as plainly as none would.
            self._trailing = start["trailers"] = not any(name.lower() == b"content-length" for name, _ in fields)
        await self._send(start)

    async def _send_data(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def _send_end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        if self._trailing:
            await self._send({"type": "http.response.trailers", "headers": list(self.trailers), "more_trailers": False})


def _request(scope: Scope, receive: Receive, limits: HttpLimits) -> tuple[Request, _Receiver]:
    receiver = _Receiver(receive, limits)
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "?"
    headers = tuple((bytes(name), bytes(value)) for name, value in scope["headers"])
    request = Request(scope["method"], _target(scope), headers, scope.get("http_version", "1.1"), receiver.body, peer)
    return request, receiver


def _target(scope: Scope) -> str:
    """The request target below the mount point, as the client encoded it (``raw_path``), so the
    guest sees the same bytes it would see served directly."""
    raw = scope.get("raw_path")
    path = bytes(raw).decode("latin-1") if raw else urllib.parse.quote(scope["path"], safe="/:@!$&'()*+,;=~")
    prefix = urllib.parse.quote(scope.get("root_path", ""), safe="/:@!$&'()*+,;=~")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :] or "/"
    query = bytes(scope.get("query_string", b""))
    return f"{path}?{query.decode('latin-1')}" if query else path


def _content_length(request: Request) -> int | None:
    for name, value in request.headers:
        if name.lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def _summary(exc: BaseException) -> str:
    """A failure on one line: a trap's message is its first line and its cause (the last), with
    the wasm backtrace between them left out."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}" if lines else ""
    return f"{type(exc).__name__}: {text}"


async def _refuse(request: Request, send: Send, status: int, reason: str, detail: str = "") -> None:
    """One log line (with ``detail``, which the client does not see) and a short plain-text
    answer, as the front end gives."""
    log.warning("%s: %s %s -> %d: %s%s", request.peer, request.method, request.target, status, reason,
                f": {detail}" if detail else "")  # fmt: skip
    body = f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
