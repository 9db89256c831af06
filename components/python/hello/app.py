"""wasi:http guest: answers every request with ``Hello, World!``."""

from guest_http import respond
from wit_world import exports
from wit_world.imports.types import IncomingRequest, ResponseOutparam


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        respond(response_out, 200, "text/plain", b"Hello, World!")
