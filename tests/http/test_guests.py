"""The test components behave as their sources say, under ``wasmtime serve`` (the reference host).

This is the reference side of the differential tests: the same requests will go to wasmhost.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.http.conftest import COMPONENT_OUT

ServeComponent = Callable[..., int]


def get(
    port: int, method: str = "GET", target: str = "/", body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["hello", "js-hello", "rust-hello"])
def test_hello(component: Callable[[str], Path], wasmtime_serve: ServeComponent, name: str) -> None:
    if not (COMPONENT_OUT / f"{name}.wasm").exists():
        pytest.skip(f"{name} was not built (its tools are not installed)")
    port = wasmtime_serve(component(name))
    status, _headers, body = get(port)
    assert (status, body) == (200, b"Hello, World!")


def test_echo_streams_10_mib_back(component: Callable[[str], Path], wasmtime_serve: ServeComponent) -> None:
    """The echo comes back while the upload goes on (http.client would deadlock: it sends first)."""
    port = wasmtime_serve(component("echo"))
    body = hashlib.sha256(b"seed").digest() * (10 * 1024 * 1024 // 32)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-test\r\nConnection: close\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(head + b"Content-Length: %d\r\n\r\n" % len(body) + body,))
        sender.start()
        reply = bytearray()
        while chunk := sock.recv(1 << 20):
            reply += chunk
        sender.join()
    response = http.client.HTTPResponse(_Replay(bytes(reply)))  # type: ignore[arg-type]
    response.begin()
    assert response.status == 200
    assert response.getheader("content-type") == "application/x-test"
    assert response.read() == body


class _Replay:
    """Received bytes, for http.client to parse (it decodes chunked bodies)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, _mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def test_inspect_describes_the_request(component: Callable[[str], Path], wasmtime_serve: ServeComponent) -> None:
    port = wasmtime_serve(component("inspect"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"PATCH /a/b%C3%A9?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    report = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert (report["method"], report["path"], report["query"]) == ("PATCH", "/a/b%C3%A9", "x=1&y=2")
    # wasmtime (hyper's header map) groups a repeated header's values; their order is kept.
    assert [h for h in report["headers"] if h[0].startswith("x-")] == [["x-a", "1"], ["x-a", "3"], ["x-b", "2"]]


def test_fetch_relays_an_outgoing_request(component: Callable[[str], Path], wasmtime_serve: ServeComponent) -> None:
    target = wasmtime_serve(component("hello"))
    port = wasmtime_serve(component("fetch"), "-S", "inherit-network=y")
    status, _headers, body = get(port, x_fetch_url=f"http://127.0.0.1:{target}/somewhere?q=1")
    assert (status, body) == (200, b"Hello, World!")
    assert get(port)[0] == 400  # no x-fetch-url header


def test_trap_gets_500(component: Callable[[str], Path], wasmtime_serve: ServeComponent) -> None:
    port = wasmtime_serve(component("trap"))
    assert get(port)[0] == 500
    assert get(port)[0] == 500  # and the host goes on


def test_never_answers(component: Callable[[str], Path], wasmtime_serve: ServeComponent) -> None:
    port = wasmtime_serve(component("never"))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(100)
