"""wasi:http guest for trailers both ways. It reads the request body and its trailers, then:

- by default answers with the same body, ending it with the request's trailers plus
  ``x-trailer-count`` (how many there were); its ``trailer`` header declares them (the request's
  own declaration, plus ``x-trailer-count``), which ``wasmtime serve`` needs to send any;
- with ``x-relay-to: URL``, POSTs the body and trailers there (outgoing-handler) and answers
  with the status, body and trailers that came back.
"""

from guest_http import finish, outgoing_request, read_all, start_response, wait, write_all
from wit_world import exports
from wit_world.imports import outgoing_handler, types
from wit_world.imports.types import Fields, IncomingBody, IncomingRequest, ResponseOutparam

Entries = list[tuple[str, bytes]]


def consume(body: IncomingBody) -> tuple[bytes, Entries]:
    """The whole body, then its trailers (child resources dropped before parents: ``with``)."""
    data = read_all(body)
    with IncomingBody.finish(body) as future:
        trailers = wait(future)
    if trailers is None:
        return data, []
    with trailers:
        return data, trailers.entries()


def relay(url: str, data: bytes, trailers: Entries) -> tuple[int, bytes, Entries]:
    request = outgoing_request(url, types.Method_Post())
    body = request.body()
    stream = body.write()
    write_all(stream, data)
    finish(body, stream, Fields.from_list(trailers))
    with outgoing_handler.handle(request, None) as future:
        answer = wait(future)
    assert isinstance(answer, types.IncomingResponse)
    with answer:
        return answer.status(), *consume(answer.consume())


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        headers = request.headers()
        relay_to, declared = headers.get("x-relay-to"), headers.get("trailer")
        data, trailers = consume(request.consume())
        if relay_to:
            status, data, trailers = relay(relay_to[0].decode(), data, trailers)
            fields = [("content-type", b"application/octet-stream")]
        else:
            status, trailers = 200, [*trailers, ("x-trailer-count", str(len(trailers)).encode())]
            declare = b", ".join([*declared, b"x-trailer-count"])
            fields = [("content-type", b"application/octet-stream"), ("trailer", declare)]
        body, stream = start_response(response_out, status, fields)
        write_all(stream, data)
        finish(body, stream, Fields.from_list(trailers))
