"""The same components and requests under wasmhost and under ``wasmtime serve`` (the reference
host): status, headers (but ``date``, and in any order: the framing headers are the front
end's) and body must be the same.

HTTP gives no meaning to the order of differently named fields, and wasmtime's (hyper's header
map) depends on its hashing, so the request headers the inspect guest reports are compared
grouped by name, each name's values in order.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.http.conftest import ServeHandler
from tests.wasip2.test_http_components import exchange as h11_exchange
from tests.wasip2.test_http_components import serve
from wasmhost import Module
from wasmhost.http import HttpLimits

Answer = tuple[int, list[tuple[str, str]], bytes]
#: (method, target, headers, body, send the body chunked)
Request = tuple[str, str, list[tuple[str, str | bytes]], bytes, bool]

CORPUS: dict[str, list[Request]] = {
    "hello": [("GET", "/", [], b"", False), ("HEAD", "/", [], b"", False), ("GET", "/?a=b&a=c", [], b"", False)],
    "inspect": [
        ("GET", "/some/path?q=1&q=2&empty=", [("x-repeated", "one"), ("x-repeated", "two")], b"", False),
        ("POST", "/form", [("content-type", "application/x-www-form-urlencoded")], b"a=1", False),
        ("PUT", "/caf%C3%A9/%E2%82%AC?x=%20", [], b"1", False),
        ("DELETE", "/thing/1", [("x-empty", "")], b"", False),
        ("PATCH", "/p", [("x-latin", b"caf\xe9")], b"{}", False),
        ("OPTIONS", "*", [], b"", False),
        ("PURGE", "/cache", [], b"", False),
    ],
    "echo": [
        ("POST", "/", [], b"", False),
        ("POST", "/", [], b"x", False),
        ("POST", "/", [("content-type", "application/octet-stream")], os.urandom(1 << 20), False),
        ("POST", "/chunked", [], os.urandom(300_000), True),
    ],
}


async def exchange(port: int, request: Request) -> Answer:
    method, target, headers, body, chunked = request
    status, fields, received = await h11_exchange(port, method, target, body, headers, chunked)
    return status, sorted((name, value) for name, value in fields if name != "date"), received


def comparable(answer: Answer) -> Answer:
    status, fields, body = answer
    if ("content-type", "application/json") in fields:
        report = json.loads(body)
        report["headers"] = sorted(report["headers"], key=lambda field: field[0])
        body = json.dumps(report).encode()
    return status, fields, body


def answers(port: int, requests: list[Request]) -> list[Answer]:
    async def all_of() -> list[Answer]:
        return [await exchange(port, request) for request in requests]

    return asyncio.run(all_of())


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_wasmhost_answers_as_wasmtime_serve_does(
    name: str, component: Callable[[str], Path], http_module: Callable[[str], Module],
    serve_handler: ServeHandler, wasmtime_serve: Callable[..., int],
) -> None:  # fmt: skip
    reference = answers(wasmtime_serve(component(name)), CORPUS[name])
    running, _handler = serve(serve_handler, http_module(name), HttpLimits(max_body_bytes=8 << 20))
    ours = answers(running.port, CORPUS[name])
    for request, theirs, mine in zip(CORPUS[name], reference, ours, strict=True):
        assert comparable(mine) == comparable(theirs), f"{request[0]} {request[1]}"
