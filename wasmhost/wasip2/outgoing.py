"""wasi:http/outgoing-handler 0.2: requests a guest sends, through an h11 client on the same
loop, under the host's network policy (``--allow-outbound``: by default every destination is
refused with ``HTTP-request-denied``), with the connect, first-byte and between-bytes timeouts
``request-options`` sets. One connection per request, closed when its response body ends.
Trailers go both ways: those the guest finishes the request body with make it chunked (unless it
set a ``content-length``, which leaves no room for them), and the response's reach the guest's
``future-trailers``."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any

import attrs
import h11

from .._native.component import Err, Ok
from .context import Wasi
from .http import TYPES, ErrorCode, Fields, FutureValue, IncomingBody, OutgoingBody
from .io import subscribe

HANDLER = "wasi:http/outgoing-handler@0.2.0"
RESOURCES: list[tuple[str, str]] = []  # all defined by wasi:http/types (``http.RESOURCES``)
_NS = 1e-9
_DEFAULT_TIMEOUT = 30.0  # seconds, for each of the three timeouts the guest does not set
_READ = 65536


class OutboundError(ErrorCode):
    """A request failed: ``case`` (and ``payload``) is the ``error-code`` the guest gets."""


class OutgoingRequest:
    def __init__(self, headers: Fields) -> None:
        self.method: Any = "get"
        self.path_with_query: str | None = None
        self.scheme: Any = None
        self.authority: str | None = None
        self.headers = headers
        self.body = OutgoingBody()


@attrs.define
class RequestOptions:
    """Timeouts in nanoseconds, None: the default."""

    connect: int | None = None
    first_byte: int | None = None
    between_bytes: int | None = None


class IncomingResponse:
    def __init__(self, status: int, headers: Fields, body: IncomingBody) -> None:
        self.status = status
        self.headers = headers
        self.body: IncomingBody | None = body  # None once the guest consumed it

    def close(self) -> None:
        """Dropped with its body never consumed: nothing will read the connection, so close it."""
        if self.body is not None:
            self.body.close()


class FutureResponse(FutureValue):
    """A response on its way: the client task, ready when it has the response head or failed.
    Dropped before the guest took the response, it closes that response's connection."""

    def close(self) -> None:
        task = self.task
        if task.done() and not self.taken and not task.cancelled() and task.exception() is None:
            task.result().close()
        super().close()


# --- the client -------------------------------------------------------------------------------


def _seconds(ns: int | None) -> float:
    return _DEFAULT_TIMEOUT if ns is None else ns * _NS


def _case(value: Any) -> tuple[str, Any]:
    """A variant value as (case, payload): the guest's are tuples, the host's defaults names."""
    return (value, None) if isinstance(value, str) else (value[0], value[1])


def _method(request: OutgoingRequest) -> str:
    case, other = _case(request.method)
    return str(other) if case == "other" else case.upper()


def _target(request: OutgoingRequest) -> tuple[bool, str, int, str]:
    """(tls, host, port, authority) from the request, or OutboundError."""
    scheme, _ = _case(request.scheme if request.scheme is not None else "HTTP")
    if scheme not in ("HTTP", "HTTPS"):
        raise OutboundError("HTTP-protocol-error")
    tls = scheme == "HTTPS"
    authority = request.authority
    if not authority:
        raise OutboundError("HTTP-request-URI-invalid")
    host, _, port_text = authority.rpartition(":") if not authority.endswith("]") else (authority, "", "")
    if not host or not port_text.isdigit():
        host, port_text = authority, ""
    port = int(port_text) if port_text else 443 if tls else 80
    return tls, host.strip("[]"), port, authority


async def _addresses(wasi: Wasi, host: str, port: int) -> list[str]:
    """The addresses of ``host`` the policy lets the guest reach (DNS only for names it may look up)."""
    policy = wasi.config.network
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        if not policy.allows_lookup(host):
            raise OutboundError("HTTP-request-denied") from None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise OutboundError("DNS-error", (str(exc), None)) from None
        found = [str(info[4][0]) for info in infos]
    else:
        found = [str(literal)]
    allowed = [a for a in found if policy.allows_outbound(ipaddress.ip_address(a.split("%")[0]), port)]
    if not allowed:
        raise OutboundError("HTTP-request-denied")
    return allowed


async def _connect(addresses: list[str], port: int, tls: bool, host: str,
                   timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    last: OutboundError = OutboundError("destination-unavailable")
    for address in addresses:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(address, port, ssl=ssl.create_default_context() if tls else None,
                                        server_hostname=host if tls else None),
                timeout,
            )  # fmt: skip
        except TimeoutError:
            last = OutboundError("connection-timeout")
        except ConnectionRefusedError:
            last = OutboundError("connection-refused")
        except ssl.SSLError as exc:
            last = OutboundError("TLS-protocol-error" if "CERTIFICATE" not in str(exc) else "TLS-certificate-error")
        except OSError:
            last = OutboundError("destination-unavailable")
    raise last


class _Exchange:
    """One request and its response over one connection, h11 doing the protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, options: RequestOptions) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT)
        self.options = options
        self.ended = False
        self.trailers: list[tuple[bytes, bytes]] = []

    async def send(self, request: OutgoingRequest, authority: str) -> None:
        pipe = request.body.pipe
        first = await pipe.get()
        fields = [(name.encode(), value) for name, value in request.headers.entries if name != "host"]
        names = {name for name, _ in fields}
        method = _method(request)
        trailers = request.body.trailers  # known by now if the body is empty
        if (first is not None or trailers) and b"content-length" not in names:
            fields.append((b"transfer-encoding", b"chunked"))
        elif first is None and b"content-length" not in names and method not in ("GET", "HEAD", "OPTIONS"):
            fields.append((b"content-length", b"0"))
        fields = [(b"host", authority.encode()), *fields, (b"connection", b"close")]
        head = h11.Request(method=method, target=request.path_with_query or "/", headers=fields)
        self._write(head)
        chunk = first
        while chunk is not None:
            self._write(h11.Data(data=chunk))
            await self.writer.drain()
            chunk = await pipe.get()
        if pipe.broken:
            raise OutboundError("HTTP-request-body-size", None)
        chunked = (b"transfer-encoding", b"chunked") in fields
        self._write(h11.EndOfMessage(headers=request.body.trailers if chunked else []))
        await self.writer.drain()

    def _write(self, event: Any) -> None:
        try:
            data = self.http.send(event)
        except h11.LocalProtocolError as exc:
            raise OutboundError("HTTP-request-URI-invalid" if "target" in str(exc) else "HTTP-protocol-error") from None
        if data:
            self.writer.write(data)

    async def next_event(self, timeout: float) -> Any:
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:
                raise OutboundError("HTTP-protocol-error") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(_READ), timeout)
            except TimeoutError:
                raise OutboundError("connection-read-timeout") from None
            except OSError:
                raise OutboundError("connection-terminated") from None
            self.http.receive_data(data)

    async def body_chunk(self) -> bytes:
        """The next piece of the response body, ``b""`` at its end (the connection then closes)."""
        while True:
            event = await self.next_event(_seconds(self.options.between_bytes))
            if isinstance(event, h11.Data) and event.data:
                return bytes(event.data)
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                if isinstance(event, h11.EndOfMessage):
                    self.trailers = [(bytes(name), bytes(value)) for name, value in event.headers]
                self.ended = True
                self.close()
                return b""
            if not isinstance(event, h11.Data):
                raise OutboundError("HTTP-response-incomplete")

    async def trailing(self) -> list[tuple[bytes, bytes]]:
        """The response's trailers, once the rest of its body is read (and dropped)."""
        while not self.ended:
            await self.body_chunk()
        return self.trailers

    def close(self) -> None:
        self.writer.close()


async def _fetch(wasi: Wasi, request: OutgoingRequest, options: RequestOptions) -> IncomingResponse:
    tls, host, port, authority = _target(request)
    addresses = await _addresses(wasi, host, port)
    reader, writer = await _connect(addresses, port, tls, host, _seconds(options.connect))
    exchange = _Exchange(reader, writer, options)
    try:
        sending = asyncio.ensure_future(exchange.send(request, authority))
        try:
            event = await exchange.next_event(_seconds(options.first_byte))
            while isinstance(event, h11.InformationalResponse):
                event = await exchange.next_event(_seconds(options.first_byte))
        except OutboundError as exc:
            if exc.case == "connection-read-timeout":
                raise OutboundError("HTTP-response-timeout") from None
            raise
        finally:
            if not sending.done():
                sending.cancel()
        if sending.done() and not sending.cancelled() and sending.exception() is not None:
            raise sending.exception()  # type: ignore[misc]
        if not isinstance(event, h11.Response):
            raise OutboundError("HTTP-response-incomplete")
    except BaseException:
        exchange.close()
        raise
    headers = Fields([(bytes(k).decode("latin-1"), bytes(v)) for k, v in event.headers], mutable=False)
    return IncomingResponse(event.status_code, headers, _ResponseBody(exchange))


class _ResponseBody(IncomingBody):
    """A response body read from its connection, which it closes when dropped."""

    def __init__(self, exchange: _Exchange) -> None:
        super().__init__(exchange.body_chunk, exchange.trailing)
        self.exchange = exchange

    def close(self) -> None:
        super().close()
        self.exchange.close()


# --- functions --------------------------------------------------------------------------------


def request_new(wasi: Wasi, headers: int) -> int:
    fields = wasi.table.take(headers, Fields)
    return wasi.table.push(OutgoingRequest(Fields(fields.entries)))


def _setter(attribute: str) -> Callable[..., Any]:
    def set_field(wasi: Wasi, rep: int, value: Any) -> Ok:
        setattr(wasi.table.get(rep, OutgoingRequest), attribute, value)
        return Ok(None)

    return set_field


def _getter(attribute: str) -> Callable[..., Any]:
    def get_field(wasi: Wasi, rep: int) -> Any:
        return getattr(wasi.table.get(rep, OutgoingRequest), attribute)

    return get_field


def request_headers(wasi: Wasi, rep: int) -> int:
    return wasi.table.push(Fields(wasi.table.get(rep, OutgoingRequest).headers.entries, mutable=False))


def request_body(wasi: Wasi, rep: int) -> Ok | Err:
    body = wasi.table.get(rep, OutgoingRequest).body
    if body.requested:
        return Err(None)
    body.requested = True
    return Ok(wasi.table.push(body))


def options_new(wasi: Wasi) -> int:
    return wasi.table.push(RequestOptions())


def _option_getter(attribute: str) -> Callable[..., Any]:
    def get_timeout(wasi: Wasi, rep: int) -> int | None:
        value: int | None = getattr(wasi.table.get(rep, RequestOptions), attribute)
        return value

    return get_timeout


def _option_setter(attribute: str) -> Callable[..., Any]:
    def set_timeout(wasi: Wasi, rep: int, value: int | None) -> Ok:
        setattr(wasi.table.get(rep, RequestOptions), attribute, value)
        return Ok(None)

    return set_timeout


def handle(wasi: Wasi, rep: int, options: int | None) -> Ok | Err:
    request = wasi.table.take(rep, OutgoingRequest)
    chosen = wasi.table.take(options, RequestOptions) if options is not None else RequestOptions()
    if not request.body.requested:
        request.body.pipe.finish()  # no body was asked for: an empty one
    task = asyncio.get_running_loop().create_task(_fetch(wasi, request, chosen))
    return Ok(wasi.table.push(FutureResponse(task)))


def future_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, FutureResponse)


def future_get(wasi: Wasi, rep: int) -> Any:
    return wasi.table.get(rep, FutureResponse).take(wasi.table.push)


def response_status(wasi: Wasi, rep: int) -> int:
    return wasi.table.get(rep, IncomingResponse).status


def response_headers(wasi: Wasi, rep: int) -> int:
    return wasi.table.push(Fields(wasi.table.get(rep, IncomingResponse).headers.entries, mutable=False))


def response_consume(wasi: Wasi, rep: int) -> Ok | Err:
    response = wasi.table.get(rep, IncomingResponse)
    body, response.body = response.body, None
    return Err(None) if body is None else Ok(wasi.table.push(body))


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    (TYPES, "[constructor]outgoing-request"): request_new,
    (TYPES, "[method]outgoing-request.body"): request_body,
    (TYPES, "[method]outgoing-request.headers"): request_headers,
    **{
        (TYPES, f"[method]outgoing-request.{name}"): _getter(attribute)
        for name, attribute in (("method", "method"), ("path-with-query", "path_with_query"),
                                ("scheme", "scheme"), ("authority", "authority"))
    },
    **{
        (TYPES, f"[method]outgoing-request.set-{name}"): _setter(attribute)
        for name, attribute in (("method", "method"), ("path-with-query", "path_with_query"),
                                ("scheme", "scheme"), ("authority", "authority"))
    },
    (TYPES, "[constructor]request-options"): options_new,
    **{
        (TYPES, f"[method]request-options.{name}-timeout"): _option_getter(attribute)
        for name, attribute in (("connect", "connect"), ("first-byte", "first_byte"),
                                ("between-bytes", "between_bytes"))
    },
    **{
        (TYPES, f"[method]request-options.set-{name}-timeout"): _option_setter(attribute)
        for name, attribute in (("connect", "connect"), ("first-byte", "first_byte"),
                                ("between-bytes", "between_bytes"))
    },
    (TYPES, "[method]future-incoming-response.subscribe"): future_subscribe,
    (TYPES, "[method]future-incoming-response.get"): future_get,
    (TYPES, "[method]incoming-response.status"): response_status,
    (TYPES, "[method]incoming-response.headers"): response_headers,
    (TYPES, "[method]incoming-response.consume"): response_consume,
    (HANDLER, "handle"): handle,
}  # fmt: skip
