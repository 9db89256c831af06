"""wasi:http guest: streams the request body back as it arrives (never holds it whole)."""

from componentize_py_types import Err
from guest_http import finish, start_response, write_all
from wit_world import exports
from wit_world.imports import streams
from wit_world.imports.types import IncomingBody, IncomingRequest, ResponseOutparam

READ_CHUNK = 65536


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        content_type = request.headers().get("content-type") or [b"application/octet-stream"]
        incoming = request.consume()
        source = incoming.stream()
        body, sink = start_response(response_out, 200, [("content-type", content_type[0])])
        while True:
            try:
                chunk = source.blocking_read(READ_CHUNK)
            except Err as err:
                if isinstance(err.value, streams.StreamError_Closed):
                    break
                raise
            write_all(sink, chunk)
        source.__exit__(None, None, None)
        IncomingBody.finish(incoming)
        finish(body, sink)
