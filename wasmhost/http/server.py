"""The asyncio side of the HTTP front end: one Protocol per connection, and an embeddable ``Server``.

A connection runs one request at a time (pipelined requests wait in the parser's buffer, and
reading pauses meanwhile). One timer covers the phase the connection is in: idle between
requests, reading a request's headers, or waiting for the handler to start its response.
Every refusal, timeout and handler failure writes one log line. An ``Observer`` is told of
each connection and each answered request (``wasmhost serve``'s metrics and access log).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Callable
from typing import Protocol, cast

import attrs

from .exchange import BodyError, Handler, Request, RequestBody, Response
from .limits import HttpLimits
from .protocol import BodyData, BodyEnd, Event, PeerClosed, Rejected, RequestHead, ServerProtocol

log = logging.getLogger("wasmhost.http")
_LINGER = 2.0
#: The ``HttpLimits`` field behind each error status the front end answers on its own.
_LIMIT_OF = {408: "header_timeout", 413: "max_body_bytes", 431: "max_header_bytes", 504: "request_timeout"}
_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f"\\]')


@attrs.frozen
class Answered:
    """One answered request. ``head`` is None when it was refused before its headers were
    complete (408, 431, 400); ``sent`` counts body bytes; ``seconds`` run from the request's
    first byte to its answer's end; ``limit`` names the ``HttpLimits`` field that answered."""

    peer: str
    head: RequestHead | None
    status: int
    sent: int
    seconds: float
    received: float  # when its first byte came, as ``time.time()``
    limit: str | None = None

    def common_log(self) -> str:
        """The Common Log Format line (``%h %l %u %t "%r" %>s %b``), quotes and control
        characters in the request line escaped as ``\\xHH``."""
        host = self.peer.rpartition(":")[0] or self.peer
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(self.received))
        line = "-"
        if self.head is not None:
            request = f"{self.head.method} {self.head.target} HTTP/{self.head.http_version}"
            line = _UNPRINTABLE.sub(lambda found: f"\\x{ord(found.group()):02x}", request)
        return f'{host} - - [{when}] "{line}" {self.status} {self.sent or "-"}'


class Observer(Protocol):
    """What a ``Server`` reports as it serves."""

    def opened(self) -> None: ...

    def closed(self) -> None: ...

    def answered(self, answer: Answered) -> None: ...


class _Connection(asyncio.Protocol):
    def __init__(
        self, handler: Handler, limits: HttpLimits, connections: set[_Connection], observer: Observer | None
    ) -> None:
        self._handler = handler
        self._limits = limits
        self._connections = connections
        self._observer = observer
        self._http = ServerProtocol(limits)
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._phase = ""  # what the timer limits: "idle", "headers", "response" or "linger"
        self._expiry = 0.0
        self._on_expiry: Callable[[], None] = self.close
        self._task: asyncio.Task[None] | None = None
        self._body: RequestBody | None = None
        self._response: Response | None = None
        self._head: RequestHead | None = None
        self._began: float | None = None  # the current request's first byte (monotonic); None once answered
        self._draining = False  # the response is done; the rest of the request body is discarded
        self._reading_paused_for: set[str] = set()
        self._writable = asyncio.Event()
        self._writable.set()
        self._out: list[bytes] = []
        self._errored = False  # an error response is sent: nothing more is written

    # --- transport callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass asyncio's
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._transport.set_write_buffer_limits(high=self._limits.buffer_bytes)
        self._connections.add(self)
        if self._observer is not None:
            self._observer.opened()
        self._arm("idle", self._limits.idle_timeout, self._idle_expired)

    def data_received(self, data: bytes) -> None:
        if self._task is None and self._http.waiting_for_head and self._phase == "idle":
            self._expect_head()
        self._dispatch(self._http.receive(data))
        if self._task is not None and self._http.request_complete and self._http.has_buffered_bytes:
            self._pause_reading("request")  # a pipelined request: it waits for this one's response

    def eof_received(self) -> bool:
        if self._http.failed:
            self.close()  # the end of a lingering close
        self._dispatch(self._http.receive(b""))
        return True  # keep the write side open: a response may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._writable.set()
        if self._body is not None:
            self._body.fail(BodyError("the client closed the connection"))
        if self._task is not None:
            self._task.cancel()
        if self._response is not None and self._response.started:
            self._answered(self._response.status, self._response.sent)  # cut short, if not reported yet
        if self._observer is not None:
            self._observer.closed()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- what the exchange calls (exchange._Wire) ---------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes; ``flush`` sends them (a response's head and first data in one packet)."""
        if data:
            self._out.append(data)

    def flush(self) -> None:
        if self._out and not self._errored and self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._out[0] if len(self._out) == 1 else b"".join(self._out))
        self._out.clear()

    async def drain(self) -> None:
        """Wait while the client is slow to read; one that reads nothing for ``idle_timeout``
        seconds is cut off."""
        self.flush()
        if not self._writable.is_set():
            try:
                await asyncio.wait_for(self._writable.wait(), self._limits.idle_timeout)
            except asyncio.TimeoutError:
                if self._transport is not None:
                    self._transport.abort()
                raise BodyError(f"the client read nothing for {self._limits.idle_timeout:g}s") from None
        if self._transport is None or self._transport.is_closing():
            raise BodyError("the client closed the connection")

    def want_body(self, buffered: int) -> None:
        """The handler reads the body: send ``100 Continue`` if the client waits for it, and
        read the socket again once the buffer is below its limit."""
        if self._http.expects_continue:
            self.write(self._http.continue_bytes())
            self.flush()
        if buffered < self._limits.buffer_bytes:
            self._resume_reading("body")

    def response_started(self) -> None:
        """Stop the deadline. The head waits for the handler's first write, but no longer than
        this turn of the loop."""
        self._disarm()
        asyncio.get_running_loop().call_soon(self.flush)

    def close(self) -> None:
        if self._transport is not None:
            self.flush()
            self._transport.close()

    @property
    def idle(self) -> bool:
        """Kept alive between requests: nothing of a next request has arrived."""
        return self._task is None and self._phase == "idle"

    # --- events ------------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestHead):
                self._start(event)
            elif isinstance(event, BodyData):
                if self._body is not None and not self._draining:
                    self._body.feed(event.data)
                    if self._body.buffered >= self._limits.buffer_bytes:
                        self._pause_reading("body")
            elif isinstance(event, BodyEnd):
                self._request_read(event.trailers)
            elif isinstance(event, Rejected):
                self._head = event.head or self._head
                self._refuse(event.status, event.reason)
            elif isinstance(event, PeerClosed):
                self.close()

    def _start(self, head: RequestHead) -> None:
        self._head = head
        self._arm("response", self._limits.request_timeout, self._deadline_expired)
        self._body = RequestBody(self, self._limits.idle_timeout)
        self._response = Response(self._http, self)
        request = Request.of(head, self._body, self._peer)
        self._task = asyncio.get_running_loop().create_task(self._run(request, self._response))

    def _request_read(self, trailers: tuple[tuple[bytes, bytes], ...]) -> None:
        """The whole request is in. A pipelined next request stays unread until this one is answered."""
        if self._draining:
            self._draining = False
            self._next_request()
            return
        if self._body is not None:
            self._body.finish(trailers)
        if self._http.has_buffered_bytes:
            self._pause_reading("request")

    async def _run(self, request: Request, response: Response) -> None:
        try:
            await self._handler(request, response)
        except asyncio.CancelledError:
            return  # the deadline passed, the request was refused, or the client went away
        except Exception as exc:  # noqa: BLE001 - any handler failure becomes a 500, and the server goes on
            if self._task is asyncio.current_task():
                self._fail(request, response, f"handler failed: {type(exc).__name__}: {exc}")
            return
        if self._task is not asyncio.current_task():
            return  # already answered (504, 413...): a handler may finish despite its cancellation
        if not response.started:
            self._fail(request, response, "handler returned without a response")
            return
        await response.end()
        self._answered(response.status, response.sent)
        self._task = None
        self._disarm()
        if self._http.request_complete:
            self._next_request()
        elif self._http.reusable:
            self._draining = True  # read the body nobody wanted, then go on with the next request
            self._resume_reading("body")
        else:
            self.close()

    def _next_request(self) -> None:
        self._body = self._response = None
        if not self._http.reusable:
            self.close()
            return
        if self._http.has_buffered_bytes:
            self._expect_head()
        else:
            self._arm("idle", self._limits.idle_timeout, self._idle_expired)
        self._resume_reading("request")
        self._resume_reading("body")
        self._dispatch(self._http.next_request())

    def _fail(self, request: Request, response: Response, why: str) -> None:
        """A handler failure: 500 if nothing was sent yet, else the connection is cut (the
        client sees a truncated response)."""
        self._task = None
        if response.started:
            log.warning("%s: %s %s: %s; response cut short", self._peer, request.method, request.target, why)
            self._answered(response.status, response.sent)
            if self._transport is not None:
                self._transport.abort()
            return
        log.warning("%s: %s %s -> 500: %s", self._peer, request.method, request.target, why)
        self._error(500, "the handler failed")

    def _refuse(self, status: int, reason: str) -> None:
        log.info("%s: -> %d: %s", self._peer, status, reason)
        if self._draining:  # the response is complete: there is nobody to answer
            self.close()
            return
        if self._task is not None:
            self._task.cancel()
            self._task = None
            if self._response is not None and self._response.started:
                self._answered(self._response.status, self._response.sent)
                if self._transport is not None:
                    self._transport.abort()
                return
        self._error(status, reason)

    def _error(self, status: int, message: str) -> None:
        """Answer with an error, then close without losing it: a client still sending would get a
        reset (and maybe lose the answer) if its data arrived after the close, so its side is read
        and discarded until it closes or for at most ``_LINGER`` seconds."""
        if self._body is not None:
            self._body.fail(BodyError(f"request refused with {status}"))
        self._out.clear()
        data = self._http.error_bytes(status, message)
        self._answered(status, len(data.partition(b"\r\n\r\n")[2]), _LIMIT_OF.get(status))
        self.write(data)
        self.flush()
        self._errored = True
        transport = self._transport
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self._arm("linger", _LINGER, self.close)
        self._reading_paused_for.clear()
        transport.resume_reading()

    def _expect_head(self) -> None:
        """A request's first bytes are here: its headers have ``header_timeout`` to complete."""
        self._head, self._began = None, time.monotonic()
        self._arm("headers", self._limits.header_timeout, self._header_expired)

    def _answered(self, status: int, sent: int, limit: str | None = None) -> None:
        """Tell the observer how the current request was answered (once)."""
        began, self._began = self._began, None
        if self._observer is None or began is None:
            return
        seconds = time.monotonic() - began
        answer = Answered(self._peer, self._head, status, sent, seconds, time.time() - seconds, limit)
        self._observer.answered(answer)

    # --- reading pauses ----------------------------------------------------------------

    def _pause_reading(self, why: str) -> None:
        if not self._reading_paused_for and self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()
        self._reading_paused_for.add(why)

    def _resume_reading(self, why: str) -> None:
        if why not in self._reading_paused_for:
            return
        self._reading_paused_for.discard(why)
        if not self._reading_paused_for and self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # --- the phase timer ---------------------------------------------------------------

    def _arm(self, phase: str, seconds: float, expired: Callable[[], None]) -> None:
        """Limit ``phase`` to ``seconds``. The loop timer is replaced only when it would fire too
        late; one that fires early re-arms itself, so most requests create no timer at all."""
        loop = asyncio.get_running_loop()
        self._phase, self._expiry, self._on_expiry = phase, loop.time() + seconds, expired
        if self._timer is None or self._timer.when() > self._expiry:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(self._expiry, self._tick)

    def _disarm(self) -> None:
        self._phase = ""  # the timer, if any, fires and finds nothing to do

    def _tick(self) -> None:
        self._timer = None
        if not self._phase or self._transport is None or self._transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._expiry:
            self._timer = loop.call_at(self._expiry, self._tick)
            return
        self._phase = ""
        self._on_expiry()

    def _idle_expired(self) -> None:
        log.info("%s: idle for %gs, closed", self._peer, self._limits.idle_timeout)
        self.close()

    def _header_expired(self) -> None:
        log.info("%s: -> 408: headers not complete within %gs", self._peer, self._limits.header_timeout)
        self._error(408, f"headers not complete within {self._limits.header_timeout:g}s")

    def _deadline_expired(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        log.warning("%s: -> 504: no response within %gs", self._peer, self._limits.request_timeout)
        self._error(504, f"no response within {self._limits.request_timeout:g}s")


class Server:
    """An HTTP/1.1 server on the running loop, for an application to embed.

    ``await server.start(host, port)`` (port 0: the OS picks; ``server.port`` tells) or
    ``start(sock=...)`` to serve a listening socket the application made; ``close()`` stops
    listening and closes every connection. Also an async context manager. ``observer`` is told
    of each connection and each answered request.
    """

    def __init__(self, handler: Handler, limits: HttpLimits | None = None, observer: Observer | None = None) -> None:
        self.handler = handler
        self.limits = limits if limits is not None else HttpLimits()
        self.observer = observer
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self, host: str | None = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(self._connection, sock=sock)
        else:
            self._server = await loop.create_server(self._connection, host, port)
        log.debug("listening on %s:%d", *self.address)  # the embedding application says what it serves

    def _connection(self) -> _Connection:
        return _Connection(self.handler, self.limits, self._connections, self.observer)

    @property
    def address(self) -> tuple[str, int]:
        """The first listening socket's address (after ``start``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def connections(self) -> int:
        """Open client connections (to check that none is left behind)."""
        return len(self._connections)

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("the server is not started")
        await self._server.serve_forever()

    def stop_accepting(self) -> None:
        """Stop listening; open connections go on (``close_idle`` ends them between requests)."""
        if self._server is not None:
            self._server.close()

    def close_idle(self) -> int:
        """Close the kept-alive connections with no request in progress; returns how many
        connections are still open."""
        for connection in [c for c in self._connections if c.idle]:
            connection.close()
        return len(self._connections)

    def close(self) -> None:
        self.stop_accepting()
        for connection in list(self._connections):
            connection.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()
        await self.wait_closed()
