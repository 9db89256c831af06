"""wasi:http guest: GETs the URL named by the ``x-fetch-url`` header and relays status and body."""

from componentize_py_types import Err
from guest_http import outgoing_request, read_all, respond, wait
from wit_world import exports
from wit_world.imports import outgoing_handler, types
from wit_world.imports.types import IncomingBody, IncomingRequest, OutgoingBody, ResponseOutparam


def fetch(url: str) -> tuple[int, bytes]:
    request = outgoing_request(url, types.Method_Get())
    OutgoingBody.finish(request.body(), None)
    # Child resources (a pollable, a body's stream) must be dropped before their parents: `with`.
    with outgoing_handler.handle(request, None) as future:
        answer = wait(future)
    assert isinstance(answer, types.IncomingResponse)
    with answer:
        status, body = answer.status(), answer.consume()
        data = read_all(body)
        with IncomingBody.finish(body):
            return status, data


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        urls = request.headers().get("x-fetch-url")
        if not urls:
            respond(response_out, 400, "text/plain", b"missing x-fetch-url header\n")
            return
        try:
            status, data = fetch(urls[0].decode())
        except Err as err:
            respond(response_out, 502, "text/plain", f"fetch failed: {err.value}\n".encode())
            return
        respond(response_out, status, "application/octet-stream", data)
