"""wasi:http components (componentize-py guests) served through wasmhost's WASI 0.2 and the
HTTP front end, with real clients."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import h11
import pytest

from tests.conftest import open_fds
from tests.http.conftest import COMPONENT_OUT, Running, ServeHandler
from wasmhost import Module
from wasmhost._native.core import RESIDENT_INSTANCES
from wasmhost.http import HttpLimits, Request, Response
from wasmhost.net.policy import Network, Rule
from wasmhost.wasip2 import ComponentHandler, WasiConfig

_T = TypeVar("_T")
MIB = 1024 * 1024


def on_loop(running: Running, coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run_coroutine_threadsafe(coro, running.loop).result(60)


def serve(serve_handler: ServeHandler, module: Module, limits: HttpLimits | None = None,
          **options: Any) -> tuple[Running, ComponentHandler]:  # fmt: skip
    handler = ComponentHandler(module, **options)
    running = serve_handler(handler, limits)
    on_loop(running, handler.warm())
    return running, handler


def request(port: int, method: str = "GET", target: str = "/", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def settle(running: Running, handler: ComponentHandler, live: int) -> int:
    """The number of live instances once cleanups queued on the loop have run (at most 5 s)."""
    deadline = time.monotonic() + 5
    while handler.live != live and time.monotonic() < deadline:
        time.sleep(0.01)
    return handler.live


@pytest.fixture
def hello(http_module: Callable[[str], Module]) -> Module:
    return http_module("hello")


def test_hello_answers_hello_world(serve_handler: ServeHandler, hello: Module) -> None:
    running, _handler = serve(serve_handler, hello)
    status, headers, body = request(running.port)
    assert (status, body) == (200, b"Hello, World!")
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == "13"


async def exchange(
    port: int, method: str, target: str, body: bytes = b"", headers: Sequence[tuple[str, str | bytes]] = (),
    chunked: bool = False,
) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
    """One request on a connection of its own, with h11: the status, the response's fields in
    order, and its body. ``body`` goes out while the response is read (a streaming echo answers
    as it reads, so a client that sent everything first would wait on itself), chunked or with
    a content-length (none for an empty body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = h11.Connection(h11.CLIENT)
    framing = [("transfer-encoding", "chunked")] if chunked else [("content-length", str(len(body)))] if body else []
    fields = [("host", "example.test"), *headers, *framing, ("connection", "close")]

    async def send() -> None:
        writer.write(client.send(h11.Request(method=method, target=target, headers=fields)) or b"")
        for offset in range(0, len(body), 65536):
            writer.write(client.send(h11.Data(data=body[offset : offset + 65536])) or b"")
            await writer.drain()
        writer.write(client.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    sending = asyncio.ensure_future(send())
    status, answer, received = 0, [], bytearray()
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
            answer = [(k.decode(), v.decode("latin-1")) for k, v in event.headers]
        elif isinstance(event, h11.Data):
            received += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    await sending
    writer.close()
    return status, answer, bytes(received)


def test_a_componentize_js_guest_answers_too(serve_handler: ServeHandler, http_module: Callable[[str], Module]) -> None:
    if not (COMPONENT_OUT / "js-hello.wasm").exists():
        pytest.skip("componentize-js is not installed (npm ci --prefix components/js), so js-hello was not built")
    running, _handler = serve(serve_handler, http_module("js-hello"))
    for _ in range(2):
        status, headers, body = request(running.port)
        assert (status, body) == (200, b"Hello, World!")
        assert headers["content-type"] == "text/plain"


def test_echo_streams_a_10_mb_body_back_byte_exact(serve_handler: ServeHandler,
                                                   http_module: Callable[[str], Module]) -> None:  # fmt: skip
    running, _handler = serve(serve_handler, http_module("echo"), HttpLimits(max_body_bytes=64 * MIB))
    payload = os.urandom(10 * MIB)
    status, fields, body = asyncio.run(exchange(running.port, "POST", "/echo", payload))
    headers = dict(fields)
    assert status == 200
    assert headers.get("transfer-encoding") == "chunked"  # streamed as written, not buffered whole
    assert len(body) == len(payload)
    assert body == payload


def test_inspect_sees_method_path_query_and_repeated_headers(serve_handler: ServeHandler,
                                                             http_module: Callable[[str], Module]) -> None:  # fmt: skip
    running, _handler = serve(serve_handler, http_module("inspect"))
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    conn.putrequest("PATCH", "/some/path?a=1&b=%C3%A9", skip_accept_encoding=True)
    conn.putheader("X-Repeated", "one")
    conn.putheader("X-Repeated", "two")
    conn.putheader("Content-Length", "3")
    conn.endheaders(b"abc")
    answer = conn.getresponse()
    report = json.loads(answer.read())
    conn.close()
    assert answer.status == 200
    assert report["method"] == "PATCH"
    assert (report["path"], report["query"]) == ("/some/path", "a=1&b=%C3%A9")
    assert ["x-repeated", "one"] in report["headers"]
    assert ["x-repeated", "two"] in report["headers"]
    assert "host" not in {name for name, _value in report["headers"]}  # the authority, as wasmtime serve does


def test_a_trap_is_a_500_and_the_next_request_is_served(serve_handler: ServeHandler,
                                                        http_module: Callable[[str], Module],
                                                        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    running, handler = serve(serve_handler, http_module("trap"), pool=1)
    caplog.set_level(logging.WARNING, "wasmhost.http")
    for _ in range(2):
        status, _headers, body = request(running.port)
        assert status == 500
        assert b"handler failed" in body
    assert sum("-> 500" in r.getMessage() for r in caplog.records) == 2
    assert settle(running, handler, 1) == 1  # the trapped instances were thrown away


def test_a_component_that_never_answers_gets_a_504_after_the_deadline(
    serve_handler: ServeHandler, http_module: Callable[[str], Module]
) -> None:
    running, handler = serve(serve_handler, http_module("never"), HttpLimits(request_timeout=0.5), pool=1)
    start = time.monotonic()
    status, _headers, _body = request(running.port)
    elapsed = time.monotonic() - start
    assert status == 504
    assert 0.5 <= elapsed < 1.5
    assert settle(running, handler, 1) == 1  # the abandoned instance is gone, the pool is refilled


def test_a_hundred_concurrent_requests_on_one_loop_then_back_to_baseline(serve_handler: ServeHandler,
                                                                         hello: Module) -> None:  # fmt: skip
    running, handler = serve(serve_handler, hello, pool=2)
    request(running.port)
    fds_before = open_fds()  # most of the hundred instances are on demand: warm() made that ready too

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data

    async def many() -> list[bytes]:
        return await asyncio.gather(*(one() for _ in range(100)))

    answers = asyncio.run(many())
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"Hello, World!") for a in answers)
    assert settle(running, handler, 2) == 2
    deadline = time.monotonic() + 5
    while open_fds() - fds_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not open_fds() - fds_before  # no descriptor left open by the requests


def test_reuse_serves_several_requests_per_instance(serve_handler: ServeHandler, hello: Module) -> None:
    fresh, fresh_handler = serve(serve_handler, hello, pool=1)
    reused, reused_handler = serve(serve_handler, hello, pool=1, reuse=5)
    for _ in range(10):
        assert request(fresh.port)[2] == b"Hello, World!"
        assert request(reused.port)[2] == b"Hello, World!"
    assert fresh_handler.instantiated >= 10
    assert reused_handler.instantiated <= 4


def test_instances_beyond_the_resident_slots_are_allocated_on_demand(serve_handler: ServeHandler,
                                                                      hello: Module) -> None:  # fmt: skip
    """The resident slots are shared by every handler in the process: fewer may be free."""
    running, handler = serve(serve_handler, hello, pool=RESIDENT_INSTANCES + 2)
    assert handler.pooled == RESIDENT_INSTANCES + 2
    assert handler.resident <= RESIDENT_INSTANCES
    for _ in range(2 * RESIDENT_INSTANCES):  # from both kinds of slot, each fresh
        assert request(running.port)[2] == b"Hello, World!"
    assert settle(running, handler, RESIDENT_INSTANCES + 2) == RESIDENT_INSTANCES + 2
    assert handler.resident <= RESIDENT_INSTANCES
    on_loop(running, handler.close())
    assert (handler.live, handler.resident) == (0, 0)


_ON_DEMAND_ONLY = """
import asyncio, logging, resource, sys
from wasmhost import Module
from wasmhost._native import core
from wasmhost.wasip2 import ComponentHandler
logging.basicConfig(level=logging.INFO, format="%(message)s")
if sys.argv[2] == "ulimit -v":
    resource.setrlimit(resource.RLIMIT_AS, (64 << 30, 64 << 30))
else:  # a component with more core instances than the pool takes per component
    core._POOL_COUNTS["max_core_instances_per_component"] = 1
async def main():
    handler = ComponentHandler(Module(sys.argv[1]))
    await handler.warm()
    print("pooled", handler.pooled, "resident", handler.resident)
    await handler.close()
asyncio.run(main())
"""


@pytest.mark.parametrize(("case", "reason"), [
    ("ulimit -v", "an address-space limit (ulimit -v 67108864) leaves no room for the pooling allocator"),
    ("counts", "transitively contains 14 core module instances, which exceeds the configured maximum of 1"),
])  # fmt: skip
def test_where_no_slot_can_be_had_every_instance_is_on_demand(hello: Module, case: str, reason: str) -> None:
    """Wasmtime's C API aborts the process when a pool cannot reserve its address space, so a
    limit is seen before any pooled engine is made; a component over the pool's counts is
    served too. Each says why in one line."""
    done = subprocess.run([sys.executable, "-c", _ON_DEMAND_ONLY, str(COMPONENT_OUT / "hello.wasm"), case],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["pooled", "2", "resident", "0"]
    assert "instances allocated on demand only: " in done.stderr and reason in done.stderr, done.stderr


class Upstream:
    """An origin server for the fetch guest: answers 201 with the target it was asked for."""

    def __init__(self) -> None:
        self.targets: list[str] = []

    async def __call__(self, request: Request, response: Response) -> None:
        self.targets.append(request.target)
        await response.start(201, [("content-type", "text/plain")])
        await response.write(b"upstream saw " + request.target.encode() + b"\n" + b"z" * 100_000)


def fetch(port: int, url: str) -> tuple[int, bytes]:
    status, _headers, body = request(port, headers={"x-fetch-url": url})
    return status, body


def test_outgoing_requests_are_refused_by_default(serve_handler: ServeHandler,
                                                  http_module: Callable[[str], Module]) -> None:  # fmt: skip
    upstream = Upstream()
    origin = serve_handler(upstream)
    running, _handler = serve(serve_handler, http_module("fetch"))
    for url in (f"http://127.0.0.1:{origin.port}/x", "http://localhost/", "http://example.invalid/"):
        assert fetch(running.port, url) == (502, b"fetch failed: ErrorCode_HttpRequestDenied()\n")
    assert upstream.targets == []


def test_outgoing_requests_go_where_the_policy_allows(serve_handler: ServeHandler,
                                                      http_module: Callable[[str], Module]) -> None:  # fmt: skip
    upstream = Upstream()
    origin = serve_handler(upstream)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]  # bound, never listening: connections are refused
    network = Network(outbound=[*Rule.parse(f"127.0.0.1:{origin.port}"), *Rule.parse(f"127.0.0.1:{refused_port}")])
    running, _handler = serve(serve_handler, http_module("fetch"), config=WasiConfig(network=network))
    try:
        status, body = fetch(running.port, f"http://127.0.0.1:{origin.port}/path?q=1")
        assert status == 201
        assert body == b"upstream saw /path?q=1\n" + b"z" * 100_000
        assert upstream.targets == ["/path?q=1"]
        assert fetch(running.port, f"http://127.0.0.1:{refused_port}/") == (
            502, b"fetch failed: ErrorCode_ConnectionRefused()\n"
        )  # fmt: skip
        assert fetch(running.port, f"http://127.0.0.1:{origin.port + 1}/")[1].startswith(
            b"fetch failed: ErrorCode_Http"
        )
    finally:
        closed.close()


def test_a_client_that_does_not_read_the_echo_stalls_the_upload(
    serve_handler: ServeHandler, http_module: Callable[[str], Module]
) -> None:
    """Backpressure end to end: the echoed body fills the socket, the guest waits on its writes,
    stops reading the request, and the client's upload stops, all with bounded buffers."""
    running, handler = serve(serve_handler, http_module("echo"), HttpLimits(max_body_bytes=1 << 30), pool=1)
    total = 256 * MIB

    async def upload() -> int:
        _reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(f"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {total}\r\n\r\n".encode())
        sent, block = 0, b"u" * MIB
        try:
            while sent < total:
                writer.write(block)
                await asyncio.wait_for(writer.drain(), 2)
                sent += len(block)
        except TimeoutError:
            pass
        writer.transport.abort()  # close() would wait for the unsent bytes
        return sent

    sent = asyncio.run(upload())
    assert sent < 64 * MIB, f"{sent / MIB:.0f} MiB went in while nobody read the response"
    assert settle(running, handler, 1) == 1  # the client went away: the instance was thrown away


def test_fuel_is_a_budget_per_request(serve_handler: ServeHandler, http_module: Callable[[str], Module]) -> None:
    """``--fuel`` for components: each request (even on a reused instance) starts with the
    whole budget, and a request that runs out is a 500 while the server goes on. (The Rust
    component: compiling for the fuel engine is quick.)"""
    hello = http_module("rust-hello")
    budget = 10**12
    running, handler = serve(serve_handler, hello, fuel=budget, reuse=2)
    slot = handler._ready[-1]  # the instance the next request takes
    assert request(running.port)[0] == 200
    per_request = budget - slot.instance.store.store.get_fuel()
    assert per_request > 0, per_request
    running, handler = serve(serve_handler, hello, fuel=per_request * 3 // 2, reuse=5)
    for _ in range(5):  # 5 requests, at most 3 instances: one served two, on two budgets
        assert request(running.port)[0] == 200
    assert handler.instantiated <= 3
    running, handler = serve(serve_handler, hello, fuel=per_request // 4)
    assert request(running.port)[0] == 500
    assert request(running.port)[0] == 500  # running out is a trap: the server answers on
