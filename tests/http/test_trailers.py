"""Trailers both ways. A chunked request's trailers reach a Python handler
(``RequestBody.trailing``) and a guest (``incoming-body.finish`` -> ``future-trailers``); trailers
given to ``Response.end`` or ``outgoing-body.finish`` end a chunked response, and a response of
known length, to HEAD or to HTTP/1.0 goes without them (it has no room for them). The
``trailers`` guest also relays them through ``outgoing-handler``, and answers the same under
``wasmtime serve``. Clients: raw sockets (http.client drops trailers), curl ``--raw`` and h11."""

from __future__ import annotations

import asyncio
import http.client
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import h11
import pytest

from tests.http.conftest import Running, ServeHandler
from wasmhost import Module
from wasmhost.cache import CompileCache
from wasmhost.http import HttpLimits, Request, Response
from wasmhost.http.protocol import BodyData, BodyEnd, ServerProtocol
from wasmhost.net.policy import Network, Rule
from wasmhost.wasip2 import ComponentHandler, WasiConfig

Fields = list[tuple[str, str]]
#: A chunked upload of "hello" that declares and sends one trailer.
UPLOAD = (
    b"POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\nconnection: close\r\n\r\n"
    b"3\r\nhel\r\n2\r\nlo\r\n0\r\nx-sum: 5\r\n\r\n"
)


# --- the protocol, without I/O -------------------------------------------------------------------


def test_a_chunked_request_ends_with_its_trailers() -> None:
    events = ServerProtocol(HttpLimits()).receive(UPLOAD)
    assert events[1:] == [BodyData(b"hel"), BodyData(b"lo"), BodyEnd(((b"x-sum", b"5"),))]


@pytest.mark.parametrize(
    ("request_head", "status", "headers", "end"),
    [
        (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", 200, [], b"0\r\nx-sum: 2\r\n\r\n"),
        (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", 200, [(b"content-length", b"2")], b""),
        (b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n", 200, [], b""),
        (b"GET / HTTP/1.0\r\n\r\n", 200, [], b""),
        (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", 204, [], b""),
    ],
    ids=["chunked", "content-length", "HEAD", "HTTP/1.0", "204"],
)
def test_only_a_chunked_response_ends_with_trailers(
    request_head: bytes, status: int, headers: list[tuple[bytes, bytes]], end: bytes
) -> None:
    protocol = ServerProtocol(HttpLimits())
    protocol.receive(request_head)
    protocol.head_bytes(status, headers)
    if status != 204:
        protocol.data_bytes(b"hi")
    assert protocol.end_bytes(((b"x-sum", b"2"),)) == end


# --- clients ------------------------------------------------------------------------------------


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def parsed(port: int, data: bytes) -> tuple[int, Fields, bytes, Fields]:
    """(status, headers but date, body, trailers) of the answer to ``data``, parsed by h11."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "0")]))
    client.send(h11.EndOfMessage())  # h11 parses a response only after a request (the bytes are ``data``)
    client.receive_data(exchange(port, data))
    client.receive_data(b"")
    status, headers, body = 0, [], b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert event is not h11.NEED_DATA and not isinstance(event, h11.ConnectionClosed), "the response ended early"
        if isinstance(event, h11.Response):
            status, headers = event.status_code, sorted(_text(event.headers))
            headers = [(name, value) for name, value in headers if name != "date"]
        elif isinstance(event, h11.Data):
            body += event.data
    return status, headers, body, _text(event.headers)


def _text(fields: Iterable[tuple[bytes, bytes]]) -> Fields:
    return [(bytes(name).decode(), bytes(value).decode()) for name, value in fields]


def curl_raw(url: str, *args: str) -> str:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    done = subprocess.run(["curl", "--raw", "-sS", "--fail", *args, url], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


# --- a Python handler -----------------------------------------------------------------------------


async def echo_trailers(request: Request, response: Response) -> None:
    """Echoes the body, and ends with the request's trailers plus ``x-count``; ``/fixed`` answers
    with a content-length, which leaves no room for them."""
    body = b"".join([chunk async for chunk in request.body])
    trailers = await request.body.trailing()
    await response.start(200, [("content-length", str(len(body)))] if request.target == "/fixed" else [])
    await response.write(body)
    await response.end([*trailers, (b"x-count", str(len(trailers)).encode())])


def test_a_handler_gets_request_trailers_and_sends_its_own(serve_handler: ServeHandler) -> None:
    running = serve_handler(echo_trailers)
    status, _headers, body, trailers = parsed(running.port, UPLOAD)
    assert (status, body, trailers) == (200, b"hello", [("x-sum", "5"), ("x-count", "1")])
    raw = exchange(running.port, UPLOAD)
    assert raw.endswith(b"\r\n0\r\nx-sum: 5\r\nx-count: 1\r\n\r\n")


def test_curl_raw_shows_the_trailers(serve_handler: ServeHandler) -> None:
    running = serve_handler(echo_trailers)
    shown = curl_raw(f"http://127.0.0.1:{running.port}/", "--data-binary", "abc", "-H", "Transfer-Encoding: chunked")
    assert shown == "3\r\nabc\r\n0\r\nx-count: 0\r\n\r\n"


def test_a_response_of_known_length_goes_without_trailers(serve_handler: ServeHandler) -> None:
    running = serve_handler(echo_trailers)
    raw = exchange(running.port, UPLOAD.replace(b"/up", b"/fixed"))
    assert raw.endswith(b"content-length: 5\r\nConnection: close\r\n\r\nhello")
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)  # and the connection goes on
    for _ in range(2):
        conn.request("POST", "/fixed", body=b"abc")
        assert conn.getresponse().read() == b"abc"
    conn.close()


# --- the trailers guest ---------------------------------------------------------------------------


@pytest.fixture
def trailers_guest(component: Callable[[str], Path], component_cache: CompileCache) -> Module:
    return Module(component("trailers"), cache=component_cache)


def serve_guest(serve_handler: ServeHandler, module: Module, config: WasiConfig | None = None) -> Running:
    handler = ComponentHandler(module, config, pool=1)
    running = serve_handler(handler, HttpLimits(request_timeout=30))
    asyncio.run_coroutine_threadsafe(handler.warm(), running.loop).result(60)
    return running


def test_a_guest_echoes_request_trailers_as_response_trailers(serve_handler: ServeHandler,
                                                              trailers_guest: Module) -> None:  # fmt: skip
    running = serve_guest(serve_handler, trailers_guest)
    status, headers, body, trailers = parsed(running.port, UPLOAD)
    assert (status, body) == (200, b"hello")
    assert ("trailer", "x-sum, x-trailer-count") in headers
    assert trailers == [("x-sum", "5"), ("x-trailer-count", "1")]
    shown = curl_raw(f"http://127.0.0.1:{running.port}/", "--data-binary", "abc", "-H", "Transfer-Encoding: chunked")
    assert shown.endswith("3\r\nabc\r\n0\r\nx-trailer-count: 0\r\n\r\n")


def test_a_guest_answering_http_1_0_sends_no_trailers(serve_handler: ServeHandler, trailers_guest: Module) -> None:
    running = serve_guest(serve_handler, trailers_guest)
    raw = exchange(running.port, b"POST / HTTP/1.0\r\ncontent-length: 3\r\n\r\nabc")
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"\r\n\r\nabc")  # close-delimited, nothing after


def test_trailers_go_both_ways_through_outgoing_requests(serve_handler: ServeHandler, trailers_guest: Module) -> None:
    """The guest POSTs the body and trailers it got to an upstream (the Python handler), and
    answers with the upstream's body and trailers: both legs of outgoing-handler carry them."""
    upstream = serve_handler(echo_trailers)
    network = Network(outbound=Rule.parse(f"127.0.0.1:{upstream.port}"))
    running = serve_guest(serve_handler, trailers_guest, WasiConfig(network=network))
    relayed = UPLOAD.replace(b"host: x\r\n", f"host: x\r\nx-relay-to: http://127.0.0.1:{upstream.port}/\r\n".encode())
    status, _headers, body, trailers = parsed(running.port, relayed)
    assert (status, body, trailers) == (200, b"hello", [("x-sum", "5"), ("x-count", "1")])


def test_wasmtime_serve_answers_the_same(serve_handler: ServeHandler, trailers_guest: Module,
                                         component: Callable[[str], Path],
                                         wasmtime_serve: Callable[..., int]) -> None:  # fmt: skip
    """hyper, under ``wasmtime serve``, sends the trailers a response declares (``trailer``) to a
    client that accepts them (``te: trailers``); wasmhost sends them to any HTTP/1.1 client."""
    reference = wasmtime_serve(component("trailers"))
    running = serve_guest(serve_handler, trailers_guest)
    accepting = UPLOAD.replace(b"host: x\r\n", b"host: x\r\nte: trailers\r\n")
    undeclared = accepting.replace(b"trailer: x-sum\r\n", b"trailer: x-sum, x-none\r\n")
    sized = b"POST / HTTP/1.1\r\nhost: x\r\nte: trailers\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"
    requests = [accepting, undeclared, sized]
    for request in requests:
        assert parsed(running.port, request) == parsed(reference, request), request
