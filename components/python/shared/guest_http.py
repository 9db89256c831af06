"""What every test guest shares: building a response and writing a body in WASI-sized pieces."""

from componentize_py_types import Ok
from wit_world.imports import streams
from wit_world.imports.types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam

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


def finish(body: OutgoingBody, stream: streams.OutputStream) -> None:
    """The stream must be dropped before its body is finished."""
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


def respond(response_out: ResponseOutparam, status: int, content_type: str, data: bytes) -> None:
    """A whole response with a known length."""
    headers = [("content-type", content_type.encode()), ("content-length", str(len(data)).encode())]
    body, stream = start_response(response_out, status, headers)
    write_all(stream, data)
    finish(body, stream)
