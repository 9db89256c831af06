"""wasi:http guest: counts the requests its instance has served, in memory it writes each time.

A fresh instance per request must answer ``1`` every time, whatever slot or memory it was
given; an instance that serves several requests counts up.
"""

from guest_http import respond
from wit_world import exports
from wit_world.imports.types import IncomingRequest, ResponseOutparam

served = 0
scratch = bytearray()


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        global served, scratch
        served += 1
        scratch = bytearray([served]) * (4 << 20)  # dirties 4 MiB of the instance's memory
        respond(response_out, 200, "text/plain", f"{served} {scratch.count(served)}".encode())
