"""wasi:http/types 0.2: the resources a handler sees (fields, the incoming request and its
body, the outgoing response and its body, the response outparam), as plain Python objects.

Bodies are streams (``streams.Feed`` in, ``streams.Pipe`` out), so both directions flow with
backpressure. Trailers go both ways: an incoming body's (``incoming-body.finish`` gives a
``future-trailers``, ready once the rest of the body is read) and the guest's own
(``outgoing-body.finish``). Requests the guest sends (``outgoing-request``,
``outgoing-handler``) are in ``outgoing``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .._native.component import Err, Ok
from .context import Wasi
from .io import subscribe
from .poll import TaskReadiness
from .streams import Feed, Pipe

TYPES = "wasi:http/types@0.2.0"
RESOURCES = [
    (TYPES, name)
    for name in ("fields", "incoming-request", "outgoing-request", "request-options", "response-outparam",
                 "incoming-response", "incoming-body", "future-trailers", "outgoing-response", "outgoing-body",
                 "future-incoming-response")
]  # fmt: skip

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
#: Headers a guest may not set, and does not see on incoming requests: they describe the
#: connection (or, ``host``, the authority), which the host owns. The same set as wasmtime's.
FORBIDDEN = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "transfer-encoding", "upgrade", "host", "http2-settings",
})  # fmt: skip
_METHODS = ("get", "head", "post", "put", "delete", "connect", "options", "trace", "patch")


def received(fields: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, bytes]]:
    """Header or trailer fields from the wire as the guest sees them: names lower-cased, and
    without the ``FORBIDDEN`` ones."""
    entries = ((name.decode("latin-1").lower(), value) for name, value in fields)
    return [(name, value) for name, value in entries if name not in FORBIDDEN]


class HeaderError(Exception):
    """One ``header-error`` case: invalid-syntax, forbidden or immutable."""

    def __init__(self, case: str) -> None:
        super().__init__(case)
        self.case = case


class Fields:
    """Header or trailer fields: names are kept lower-cased, values as bytes, order kept."""

    def __init__(self, entries: list[tuple[str, bytes]] | None = None, mutable: bool = True) -> None:
        self.entries: list[tuple[str, bytes]] = entries if entries is not None else []
        self.mutable = mutable

    @staticmethod
    def checked(name: str, values: list[bytes]) -> str:
        encoded = name.encode("latin-1", "replace")
        if not _TOKEN.match(encoded) or any(_BAD_VALUE.search(v) for v in values):
            raise HeaderError("invalid-syntax")
        lowered = name.lower()
        if lowered in FORBIDDEN:
            raise HeaderError("forbidden")
        return lowered

    def _mutate(self) -> None:
        if not self.mutable:
            raise HeaderError("immutable")

    def get(self, name: str) -> list[bytes]:
        lowered = name.lower()
        return [value for key, value in self.entries if key == lowered]

    def set(self, name: str, values: list[bytes]) -> None:
        self._mutate()
        lowered = self.checked(name, values)
        self.entries = [(k, v) for k, v in self.entries if k != lowered] + [(lowered, v) for v in values]

    def append(self, name: str, value: bytes) -> None:
        self._mutate()
        self.entries.append((self.checked(name, [value]), value))

    def delete(self, name: str) -> None:
        self._mutate()
        lowered = self.checked(name, [])
        self.entries = [(k, v) for k, v in self.entries if k != lowered]


#: Reads what is left of a body and returns its trailer fields (none unless it had some).
Trailing = Callable[[], Awaitable[Iterable[tuple[bytes, bytes]]]]


class IncomingBody(Feed):
    """An incoming body: the guest takes its stream once, then finishes it, which starts reading
    its trailers (``trailing``)."""

    def __init__(self, source: Callable[[], Awaitable[bytes]], trailing: Trailing) -> None:
        super().__init__(source)
        self.trailing = trailing
        self.stream_taken = False


class IncomingRequest:
    def __init__(self, method: str, path_with_query: str, scheme: str, authority: str | None, headers: Fields,
                 body: IncomingBody) -> None:  # fmt: skip
        self.method = method
        self.path_with_query = path_with_query
        self.scheme = scheme
        self.authority = authority
        self.headers = headers
        self.body: IncomingBody | None = body


class OutgoingBody:
    """A body the guest writes, queued in ``pipe`` for the host to send, then its trailers."""

    def __init__(self) -> None:
        self.pipe = Pipe()
        self.requested = False  # the guest asked for this body (outgoing-response.body)
        self.stream_taken = False
        self.finished = False
        self.trailers: list[tuple[bytes, bytes]] = []  # given to outgoing-body.finish

    def close(self) -> None:
        """Dropped without ``finish``: the body is incomplete (the host cuts the response)."""
        if not self.finished:
            self.pipe.break_()


class OutgoingResponse:
    def __init__(self, headers: Fields) -> None:
        self.status = 200
        self.headers = headers
        self.body = OutgoingBody()


class ResponseOutparam:
    """Where the guest puts its response: ``future`` gets the response, or the error it sent."""

    def __init__(self) -> None:
        self.future: asyncio.Future[OutgoingResponse] = asyncio.get_running_loop().create_future()


class ResponseError(Exception):
    """The guest answered with an ``error-code`` instead of a response."""


class ErrorCode(Exception):
    """A failure the guest sees as this wasi:http ``error-code`` (``case``, and ``payload``)."""

    def __init__(self, case: str, payload: Any = None) -> None:
        super().__init__(case if payload is None else f"{case}: {payload}")
        self.case = case
        self.payload = payload

    @property
    def code(self) -> Any:
        return (self.case, self.payload)


class FutureValue(TaskReadiness):
    """A wasi:http future (``future-trailers``, ``future-incoming-response``): a task whose
    outcome the guest may take once."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        super().__init__(task)
        self.taken = False

    def take(self, deliver: Callable[[Any], Any]) -> Any:
        """``get``: none while pending; then once ``ok(ok(deliver(value)))`` or ``ok(err(error-code))``;
        then ``err``."""
        if not self.task.done():
            return None
        if self.taken:
            return Err(None)
        self.taken = True
        if self.task.cancelled():
            return Ok(Err(("internal-error", "cancelled")))
        exc = self.task.exception()
        if isinstance(exc, ErrorCode):
            return Ok(Err(exc.code))
        if exc is not None:
            return Ok(Err(("internal-error", f"{type(exc).__name__}: {exc}")))
        return Ok(Ok(deliver(self.task.result())))


class FutureTrailers(FutureValue):
    """The trailers of an incoming body the guest finished."""


# --- functions --------------------------------------------------------------------------------


def _header_result(op: Callable[[], Any]) -> Ok | Err:
    try:
        return Ok(op())
    except HeaderError as exc:
        return Err(exc.case)


def fields_new(wasi: Wasi) -> int:
    return wasi.table.push(Fields())


def fields_from_list(wasi: Wasi, entries: list[tuple[str, bytes]]) -> Ok | Err:
    try:
        checked = [(Fields.checked(name, [value]), value) for name, value in entries]
    except HeaderError as exc:
        return Err(exc.case)
    return Ok(wasi.table.push(Fields(checked)))


def fields_get(wasi: Wasi, rep: int, name: str) -> list[bytes]:
    return wasi.table.get(rep, Fields).get(name)


def fields_has(wasi: Wasi, rep: int, name: str) -> bool:
    return bool(wasi.table.get(rep, Fields).get(name))


def fields_set(wasi: Wasi, rep: int, name: str, values: list[bytes]) -> Ok | Err:
    fields = wasi.table.get(rep, Fields)
    return _header_result(lambda: fields.set(name, values))


def fields_delete(wasi: Wasi, rep: int, name: str) -> Ok | Err:
    fields = wasi.table.get(rep, Fields)
    return _header_result(lambda: fields.delete(name))


def fields_append(wasi: Wasi, rep: int, name: str, value: bytes) -> Ok | Err:
    fields = wasi.table.get(rep, Fields)
    return _header_result(lambda: fields.append(name, value))


def fields_entries(wasi: Wasi, rep: int) -> list[tuple[str, bytes]]:
    return list(wasi.table.get(rep, Fields).entries)


def fields_clone(wasi: Wasi, rep: int) -> int:
    return wasi.table.push(Fields(list(wasi.table.get(rep, Fields).entries)))


def request_method(wasi: Wasi, rep: int) -> Any:
    method = wasi.table.get(rep, IncomingRequest).method
    lowered = method.lower()
    return lowered if lowered in _METHODS and method.isupper() else ("other", method)


def request_path_with_query(wasi: Wasi, rep: int) -> str:
    return wasi.table.get(rep, IncomingRequest).path_with_query


def request_scheme(wasi: Wasi, rep: int) -> Any:
    scheme = wasi.table.get(rep, IncomingRequest).scheme
    return {"http": "HTTP", "https": "HTTPS"}.get(scheme, ("other", scheme))


def request_authority(wasi: Wasi, rep: int) -> str | None:
    return wasi.table.get(rep, IncomingRequest).authority


def request_headers(wasi: Wasi, rep: int) -> int:
    """A child handle on the request's headers, immutable."""
    return wasi.table.push(Fields(wasi.table.get(rep, IncomingRequest).headers.entries, mutable=False))


def request_consume(wasi: Wasi, rep: int) -> Ok | Err:
    request = wasi.table.get(rep, IncomingRequest)
    body, request.body = request.body, None
    return Err(None) if body is None else Ok(wasi.table.push(body))


def body_stream(wasi: Wasi, rep: int) -> Ok | Err:
    body = wasi.table.get(rep, IncomingBody)
    if body.stream_taken:
        return Err(None)
    body.stream_taken = True
    return Ok(wasi.table.push(body))


def body_finish(wasi: Wasi, rep: int) -> int:
    body = wasi.table.take(rep, IncomingBody)
    return wasi.table.push(FutureTrailers(asyncio.ensure_future(body.trailing())))


def trailers_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, FutureTrailers)


def trailers_get(wasi: Wasi, rep: int) -> Any:
    def fields(trailers: Iterable[tuple[bytes, bytes]]) -> int | None:
        kept = received(trailers)
        return wasi.table.push(Fields(kept, mutable=False)) if kept else None

    return wasi.table.get(rep, FutureTrailers).take(fields)


def response_new(wasi: Wasi, headers: int) -> int:
    fields = wasi.table.take(headers, Fields)
    return wasi.table.push(OutgoingResponse(Fields(fields.entries)))


def response_status(wasi: Wasi, rep: int) -> int:
    return wasi.table.get(rep, OutgoingResponse).status


def response_set_status(wasi: Wasi, rep: int, status: int) -> Ok | Err:
    if not 100 <= status <= 999:
        return Err(None)
    wasi.table.get(rep, OutgoingResponse).status = status
    return Ok(None)


def response_headers(wasi: Wasi, rep: int) -> int:
    return wasi.table.push(wasi.table.get(rep, OutgoingResponse).headers)


def response_body(wasi: Wasi, rep: int) -> Ok | Err:
    body = wasi.table.get(rep, OutgoingResponse).body
    if body.requested:
        return Err(None)
    body.requested = True
    return Ok(wasi.table.push(body))


def outgoing_body_write(wasi: Wasi, rep: int) -> Ok | Err:
    body = wasi.table.get(rep, OutgoingBody)
    if body.stream_taken:
        return Err(None)
    body.stream_taken = True
    return Ok(wasi.table.push(body.pipe))


def outgoing_body_finish(wasi: Wasi, rep: int, trailers: int | None) -> Ok | Err:
    body = wasi.table.take(rep, OutgoingBody)
    if trailers is not None:
        body.trailers = [(name.encode("latin-1"), value) for name, value in wasi.table.take(trailers, Fields).entries]
    body.finished = True
    body.pipe.finish()
    return Ok(None)


def outparam_set(wasi: Wasi, rep: int, response: Ok | Err) -> None:
    outparam = wasi.table.take(rep, ResponseOutparam)
    if outparam.future.done():
        raise RuntimeError("response-outparam.set called twice")
    if isinstance(response, Ok):
        outparam.future.set_result(wasi.table.take(response.value, OutgoingResponse))
    else:
        outparam.future.set_exception(ResponseError(f"the component answered with error {response.value}"))


def http_error_code(_wasi: Wasi, _error: int) -> None:
    return None


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    (TYPES, "[constructor]fields"): fields_new,
    (TYPES, "[static]fields.from-list"): fields_from_list,
    (TYPES, "[method]fields.get"): fields_get,
    (TYPES, "[method]fields.has"): fields_has,
    (TYPES, "[method]fields.set"): fields_set,
    (TYPES, "[method]fields.delete"): fields_delete,
    (TYPES, "[method]fields.append"): fields_append,
    (TYPES, "[method]fields.entries"): fields_entries,
    (TYPES, "[method]fields.clone"): fields_clone,
    (TYPES, "[method]incoming-request.method"): request_method,
    (TYPES, "[method]incoming-request.path-with-query"): request_path_with_query,
    (TYPES, "[method]incoming-request.scheme"): request_scheme,
    (TYPES, "[method]incoming-request.authority"): request_authority,
    (TYPES, "[method]incoming-request.headers"): request_headers,
    (TYPES, "[method]incoming-request.consume"): request_consume,
    (TYPES, "[method]incoming-body.stream"): body_stream,
    (TYPES, "[static]incoming-body.finish"): body_finish,
    (TYPES, "[method]future-trailers.subscribe"): trailers_subscribe,
    (TYPES, "[method]future-trailers.get"): trailers_get,
    (TYPES, "[constructor]outgoing-response"): response_new,
    (TYPES, "[method]outgoing-response.status-code"): response_status,
    (TYPES, "[method]outgoing-response.set-status-code"): response_set_status,
    (TYPES, "[method]outgoing-response.headers"): response_headers,
    (TYPES, "[method]outgoing-response.body"): response_body,
    (TYPES, "[method]outgoing-body.write"): outgoing_body_write,
    (TYPES, "[static]outgoing-body.finish"): outgoing_body_finish,
    (TYPES, "[static]response-outparam.set"): outparam_set,
    (TYPES, "http-error-code"): http_error_code,
}
