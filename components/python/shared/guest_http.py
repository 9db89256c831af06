"""What every test guest shares: building a response or an outgoing request, writing a body in
WASI-sized pieces, reading a whole incoming body, and waiting for a wasi:http future."""

from typing import Any
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import streams, types
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
)

# wasi:io/streams lets blocking-write-and-flush take at most 4096 bytes per call.
WRITE_CHUNK = 4096


def start_response(
    response_out: ResponseOutparam, status: int, headers: list[tuple[str, bytes]]
) -> tuple[OutgoingBody, streams.OutputStream]:
    """Send the status and headers now; the body follows through the returned stream."""
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    return body, body.write()


def write_all(stream: streams.OutputStream, data: bytes) -> None:
    for offset in range(0, len(data), WRITE_CHUNK):
        stream.blocking_write_and_flush(data[offset : offset + WRITE_CHUNK])


def finish(body: OutgoingBody, stream: streams.OutputStream, trailers: Fields | None = None) -> None:
    """The stream must be dropped before its body is finished."""
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, trailers)


def outgoing_request(url: str, method: types.Method) -> OutgoingRequest:
    """A request for ``url``, its body still to be written and finished."""
    parts = urlsplit(url)
    request = OutgoingRequest(Fields())
    request.set_method(method)
    request.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + ("?" + parts.query if parts.query else "") or "/")
    return request


def respond(response_out: ResponseOutparam, status: int, content_type: str, data: bytes) -> None:
    """A whole response with a known length."""
    headers = [("content-type", content_type.encode()), ("content-length", str(len(data)).encode())]
    body, stream = start_response(response_out, status, headers)
    write_all(stream, data)
    finish(body, stream)


def read_all(body: IncomingBody) -> bytes:
    """An incoming body's whole stream (dropped before the body is finished, as WASI requires)."""
    data = bytearray()
    with body.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(65536)
            except Err as err:
                if isinstance(err.value, streams.StreamError_Closed):
                    break
                raise
    return bytes(data)


def wait(future: Any) -> Any:
    """A wasi:http future's value, option<result<result<T, error-code>>>: T, or raise the Err
    (its pollable is dropped before the future is read)."""
    with future.subscribe() as ready:
        ready.block()
    outcome = future.get()
    while isinstance(outcome, (Ok, Err)):
        if isinstance(outcome, Err):
            raise outcome
        outcome = outcome.value
    return outcome
