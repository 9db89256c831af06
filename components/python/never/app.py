"""wasi:http guest: never answers (sleeps forever), to exercise the host's request deadline."""

import time

from wit_world import exports
from wit_world.imports.types import IncomingRequest, ResponseOutparam


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        while True:
            time.sleep(3600)
