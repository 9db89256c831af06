"""wasi:http guest: fails every request (the exception becomes a trap in the host)."""

from wit_world import exports
from wit_world.imports.types import IncomingRequest, ResponseOutparam


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        raise RuntimeError("trap guest: failing on purpose")
