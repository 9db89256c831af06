"""What a handler sees: the request (its body read as it arrives) and a response writer.

Both sides apply backpressure: a body the handler does not read stops the server reading the
socket once ``buffer_bytes`` are queued, and writing to a client that does not read waits until
the transport's buffer drains. Memory per request stays bounded either way.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol

import attrs

from .protocol import RequestHead, ServerProtocol


class BodyError(ConnectionError):
    """The request body cannot be read to its end (the client went away, or it was refused)."""


class _BodyWire(Protocol):
    """Where a request body comes from: told when the handler wants more of it."""

    def want_body(self, buffered: int) -> None: ...


class _Wire(_BodyWire, Protocol):
    """The connection as the exchange needs it: where bytes go, and when to wait."""

    def write(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    async def drain(self) -> None: ...

    def response_started(self) -> None: ...


class RequestBody:
    """The request body in arrival order; ``read()`` returns ``b""`` at its end, and raises
    ``BodyError`` when the client sends nothing for ``stall_timeout`` seconds. ``trailers`` are
    the trailer fields a chunked body ended with (known at its end)."""

    def __init__(self, wire: _BodyWire, stall_timeout: float) -> None:
        self._wire = wire
        self._stall_timeout = stall_timeout
        self._chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.trailers: tuple[tuple[bytes, bytes], ...] = ()
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` (at least 1 unless the body has ended), waiting for them if needed."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            self._wire.want_body(0)
            try:
                await asyncio.wait_for(self._waiter, self._stall_timeout)
            except asyncio.TimeoutError:
                raise BodyError(f"no request body data for {self._stall_timeout:g}s") from None
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self._chunks.appendleft(rest)
        self.buffered -= len(chunk)
        self._wire.want_body(self.buffered)
        return chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk

    async def trailing(self) -> tuple[tuple[bytes, bytes], ...]:
        """The trailers, once the rest of the body is read (and dropped)."""
        async for _chunk in self:
            pass
        return self.trailers

    # --- fed by the connection ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        self._wake()

    def finish(self, trailers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.trailers = trailers
        self._done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


@attrs.define
class Request:
    """One request: ``target`` is the request target as sent (path and query, or absolute form)."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    http_version: str
    body: RequestBody
    peer: str

    @classmethod
    def of(cls, head: RequestHead, body: RequestBody, peer: str) -> Request:
        return cls(head.method, head.target, head.headers, head.http_version, body, peer)


class Response:
    """Writes one response: ``start()`` once, ``write()`` any number of times, then ``end()``.

    Without a ``content-length`` header the body is sent chunked, and may end with trailers
    (``end(trailers)``; a body of known length has no room for them). The head goes out with the
    first ``write()`` (one packet), or by the end of the loop's turn; ``write()`` sends at once
    and waits while the client is slow to read. Another transport (``asgi``) subclasses it and
    replaces the three ``_send_*`` steps.
    """

    started = False
    finished = False
    status = 0
    #: Body bytes written so far (what an access log reports).
    sent = 0
    #: Trailer fields ``end()`` was given.
    trailers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, http: ServerProtocol, wire: _Wire) -> None:
        self._http = http
        self._wire = wire

    async def start(self, status: int, headers: Iterable[tuple[bytes | str, bytes | str]] = ()) -> None:
        if self.started:
            raise RuntimeError("the response has already started")
        self.started = True
        self.status = status
        await self._send_head(status, [(_raw(name), _raw(value)) for name, value in headers])

    async def write(self, data: bytes) -> None:
        if not self.started:
            raise RuntimeError("write() before start()")
        await self._send_data(data)
        self.sent += len(data)

    async def end(self, trailers: Iterable[tuple[bytes | str, bytes | str]] = ()) -> None:
        if not self.started:
            raise RuntimeError("end() before start()")
        if not self.finished:
            self.finished = True
            self.trailers = tuple((_raw(name), _raw(value)) for name, value in trailers)
            await self._send_end()

    async def _send_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        self._wire.write(self._http.head_bytes(status, fields))
        self._wire.response_started()

    async def _send_data(self, data: bytes) -> None:
        self._wire.write(self._http.data_bytes(data))
        await self._wire.drain()

    async def _send_end(self) -> None:
        self._wire.write(self._http.end_bytes(self.trailers))
        self._wire.flush()


def _raw(text: bytes | str) -> bytes:
    return text.encode("latin-1") if isinstance(text, str) else text


#: What serves requests: an async callable that answers ``request`` through ``response``.
Handler = Callable[[Request, Response], Awaitable[None]]
