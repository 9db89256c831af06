"""wasi:http guest: describes the request it got (method, path, query, headers) as JSON."""

import json

from guest_http import respond
from wit_world import exports
from wit_world.imports import types
from wit_world.imports.types import IncomingRequest, ResponseOutparam


def method_name(method: types.Method) -> str:
    if isinstance(method, types.Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path, _, query = (request.path_with_query() or "").partition("?")
        report = {
            "method": method_name(request.method()),
            "path": path,
            "query": query,
            "headers": [[name, value.decode("latin-1")] for name, value in request.headers().entries()],
        }
        respond(response_out, 200, "application/json", json.dumps(report).encode())
