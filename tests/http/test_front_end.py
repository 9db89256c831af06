"""The HTTP front end with real clients (curl, http.client, wrk, raw sockets) and Python handlers."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import open_fds
from tests.http.conftest import ServeHandler
from wasmhost.http import HttpLimits, Request, Response

MIB = 1024 * 1024


class Calls:
    """A handler that records what it was called with, and answers as the path says."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.cancelled = 0
        self.written = 0  # response bytes the handler has handed over so far
        self.received: list[int] = []  # body chunk sizes as the handler read them

    async def __call__(self, request: Request, response: Response) -> None:
        self.targets.append(request.target)
        path = request.target.partition("?")[0]
        if path == "/echo":  # reads before answering, so a client expecting 100-continue gets it
            chunk = await request.body.read()
            await response.start(200, [("content-type", "application/octet-stream")])
            while chunk:
                self.received.append(len(chunk))
                await response.write(chunk)
                chunk = await request.body.read()
        elif path == "/inspect":
            lines = [f"{request.method} {request.target} HTTP/{request.http_version}"]
            lines += [f"{name.decode()}: {value.decode()}" for name, value in request.headers]
            await response.start(200, [("content-type", "text/plain")])
            await response.write("\n".join(lines).encode())
        elif path == "/firehose":  # as much as the client takes
            await response.start(200, [("content-type", "application/octet-stream")])
            block = b"x" * 65536
            for _ in range(800):
                await response.write(block)
                self.written += len(block)
        elif path == "/count":  # the body's size, once it is all in
            size = 0
            async for chunk in request.body:
                size += len(chunk)
            await response.start(200, [("content-length", str(len(str(size))))])
            await response.write(str(size).encode())
        elif path == "/ignore-body":
            await response.start(200, [("content-length", "2")])
            await response.write(b"ok")
        elif path == "/boom":
            raise RuntimeError("boom on purpose")
        elif path == "/never":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        elif path == "/silent":
            return
        else:
            await response.start(200, [("content-type", "text/plain"), ("content-length", "13")])
            await response.write(b"Hello, World!")


@pytest.fixture
def calls() -> Calls:
    return Calls()


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    got = bytearray()
    while chunk := sock.recv(65536):
        got += chunk
    return bytes(got)


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}: {got!r}"
        got += chunk
    return got


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    """Whether one ``wasmhost.http`` log line holds every part."""
    lines = [r.getMessage() for r in caplog.records if r.name == "wasmhost.http"]
    return any(all(part in line for part in parts) for line in lines)


@pytest.fixture(autouse=True)
def _http_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO, logger="wasmhost.http")
    yield


# --- real clients --------------------------------------------------------------------


def test_curl_reuses_one_connection(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    url = f"http://127.0.0.1:{port}"
    done = subprocess.run(["curl", "-sv", f"{url}/a", f"{url}/b"], capture_output=True, text=True, timeout=30)
    assert done.stdout == "Hello, World!Hello, World!"
    assert "Re-using existing connection" in done.stderr
    assert calls.targets == ["/a", "/b"]


def test_curl_uploads_chunked_and_with_expect_100_continue(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    body = bytes(range(256)) * 4096
    headers = ["-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue"]
    done = subprocess.run(
        ["curl", "-sv", "--data-binary", "@-", *headers, f"http://127.0.0.1:{port}/echo"],
        input=body,
        capture_output=True,
        timeout=30,
    )
    assert done.stdout == body
    assert b"HTTP/1.1 100 Continue" in done.stderr


def test_http_client_keep_alive_head_and_chunked_both_ways(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("HEAD", "/")
        head = conn.getresponse()
        assert (head.status, head.getheader("content-length"), head.read()) == (200, "13", b"")
        conn.request("POST", "/echo", body=iter([b"abc", b"", b"def" * 1000]), encode_chunked=True)
        echoed = conn.getresponse()
        assert echoed.getheader("transfer-encoding") == "chunked"
        assert echoed.read() == b"abc" + b"def" * 1000
        conn.request("GET", "/inspect?q=%C3%A9&q=2", headers={"X-Rep": "1"})
        conn.putheader  # noqa: B018 - the same connection again
        seen = conn.getresponse().read().decode()
        assert seen.splitlines()[0] == "GET /inspect?q=%C3%A9&q=2 HTTP/1.1"
        assert "x-rep: 1" in seen.splitlines()
    finally:
        conn.close()
    assert calls.targets == ["/", "/echo", "/inspect?q=%C3%A9&q=2"]


def test_repeated_headers_keep_their_order(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    reply = raw(port, b"GET /inspect HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\nConnection: close\r\n\r\n")
    body = reply.partition(b"\r\n\r\n")[2].decode()
    assert re.findall(r"x-[ab]: \d", body) == ["x-a: 1", "x-b: 2", "x-a: 3"]


def test_pipelined_requests_are_answered_in_order(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    requests = b"".join(f"GET /inspect?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(5))
    reply = raw(port, requests + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert re.findall(rb"GET /inspect\?n=(\d)", reply) == [b"0", b"1", b"2", b"3", b"4"]
    assert reply.endswith(b"Hello, World!")
    assert calls.targets[-1] == "/last"


def test_a_client_that_closes_its_side_after_the_request_still_gets_the_response(
    serve_handler: ServeHandler, calls: Calls
) -> None:
    port = serve_handler(calls).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        sock.shutdown(socket.SHUT_WR)
        reply = read_to_close(sock)
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"3\r\nabc\r\n0\r\n\r\n")


def test_an_http_1_0_client_gets_a_close_delimited_body(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    reply = raw(port, b"GET /inspect HTTP/1.0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding" not in head.lower()
    assert body == b"GET /inspect HTTP/1.0"


def test_expect_100_continue_is_sent_when_the_handler_reads(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        assert read_until(sock, b"0\r\n\r\n").endswith(b"5\r\nhello\r\n0\r\n\r\n")


def test_an_answer_without_the_expected_100_continue_closes_the_connection(
    serve_handler: ServeHandler, calls: Calls
) -> None:
    port = serve_handler(calls).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        reply = read_to_close(sock)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nok")


def test_an_unread_body_is_drained_and_the_connection_kept(serve_handler: ServeHandler, calls: Calls) -> None:
    port = serve_handler(calls).port
    body = b"z" * 300_000
    reply = raw(
        port,
        b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
        + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert calls.targets == ["/ignore-body", "/"]


def test_wrk_short_run(serve_handler: ServeHandler, calls: Calls) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    running = serve_handler(calls)
    done = subprocess.run(
        ["wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{running.port}/"], capture_output=True, text=True, timeout=30
    )
    requests = int(re.search(r"(\d+) requests in", done.stdout).group(1))  # type: ignore[union-attr]
    assert requests > 100, done.stdout
    assert "Non-2xx" not in done.stdout and "Socket errors" not in done.stdout, done.stdout
    deadline = time.monotonic() + 5
    while running.call(lambda: running.server.connections) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.call(lambda: running.server.connections) == 0


# --- bad input: one response, one log line, the handler never called ----------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header : y\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", 413),
    ],
)
def test_bad_requests_never_reach_the_handler(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: int
) -> None:
    port = serve_handler(calls, HttpLimits(max_body_bytes=1000)).port
    reply = raw(port, request_bytes)
    assert status_of(reply) == status
    assert b"connection: close" in reply
    assert calls.targets == []
    assert logged(caplog, f"-> {status}")
    assert raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"Hello, World!")


def test_a_chunked_body_over_the_limit_gets_413(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    port = serve_handler(calls, HttpLimits(max_body_bytes=100_000)).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (50_000, b"y" * 50_000)
        sock.sendall(chunk * 3)
        reply = read_to_close(sock)
    assert status_of(reply) == 413
    assert logged(caplog, "-> 413: body over 100000 bytes")


def test_slowloris_gets_408_after_the_header_timeout(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    port = serve_handler(calls, HttpLimits(header_timeout=0.5)).port
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        reply = b""
        for n in range(20):  # one header line every 0.1 s: never complete
            try:
                sock.sendall(b"X-%d: y\r\n" % n)
            except OSError:
                break
            time.sleep(0.1)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                reply += sock.recv(65536)
            sock.setblocking(True)
            if reply:
                break
        reply += read_to_close(sock)
    assert 0.4 < time.monotonic() - start < 2.5
    assert status_of(reply) == 408
    assert calls.targets == []
    assert logged(caplog, "-> 408: headers not complete within 0.5s")


def test_an_idle_connection_is_closed(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    port = serve_handler(calls, HttpLimits(idle_timeout=0.3)).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until(sock, b"Hello, World!").startswith(b"HTTP/1.1 200 OK")
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert 0.2 < time.monotonic() - start < 2
    assert logged(caplog, "idle for 0.3s, closed")


def test_a_handler_that_never_answers_gets_504(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    port = serve_handler(calls, HttpLimits(request_timeout=0.5)).port
    start = time.monotonic()
    reply = raw(port, b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    assert 0.4 < time.monotonic() - start < 3
    assert status_of(reply) == 504
    deadline = time.monotonic() + 5  # the handler is cancelled on the server's own thread
    while calls.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls.cancelled == 1
    assert logged(caplog, "-> 504: no response within 0.5s")


@pytest.mark.parametrize(
    ("path", "why"), [("/boom", "RuntimeError: boom on purpose"), ("/silent", "without a response")]
)
def test_a_failing_handler_gets_500_and_the_server_goes_on(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture, path: str, why: str
) -> None:
    port = serve_handler(calls).port
    reply = raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_of(reply) == 500
    assert logged(caplog, f"GET {path} -> 500", why)
    assert raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"Hello, World!")


# --- streaming and backpressure ------------------------------------------------------


def test_a_streaming_upload_is_read_as_it_arrives(serve_handler: ServeHandler, calls: Calls) -> None:
    """The echo of each piece comes back before the client has sent the next one."""
    port = serve_handler(calls).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        seen = b""
        for n in range(5):
            piece = b"piece-%d;" % n
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            seen += read_until(sock, piece)
        sock.sendall(b"0\r\n\r\n")
        seen += read_until(sock, b"0\r\n\r\n")
    assert len(calls.received) == 5


def test_a_slow_reading_client_holds_the_handler_back(serve_handler: ServeHandler, calls: Calls) -> None:
    """The handler offers 50 MiB; while the client reads nothing, little of it leaves the handler."""
    running = serve_handler(calls)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting: a fixed window
        sock.settimeout(10)
        sock.connect(("127.0.0.1", running.port))
        sock.sendall(b"GET /firehose HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.5)
        stalled = calls.written
        time.sleep(0.3)
        assert calls.written == stalled  # waiting, not buffering
        assert stalled < 8 * MIB  # socket buffers plus the transport's high-water mark
        total = len(read_to_close(sock))
    assert total > 800 * 65536
    assert calls.written == 800 * 65536


def test_a_body_the_handler_does_not_read_yet_stops_the_socket(serve_handler: ServeHandler) -> None:
    """A 32 MiB upload to a handler that waits: the server reads only ``buffer_bytes`` ahead."""
    gate = asyncio.Event()
    buffered: list[int] = []

    async def slow(request: Request, response: Response) -> None:
        await gate.wait()
        buffered.append(request.body.buffered)
        size = 0
        async for chunk in request.body:
            size += len(chunk)
        await response.start(200, [("content-length", str(len(str(size))))])
        await response.write(str(size).encode())

    running = serve_handler(slow, HttpLimits(buffer_bytes=64 * 1024))
    body = b"b" * (32 * MIB)
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                sent += sock.send(body[sent : sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < 16 * MIB  # the client is blocked: the server stopped reading
        running.call(gate.set)
        sock.setblocking(True)
        sock.sendall(body[sent:])
        reply = read_to_close(sock)
    assert reply.endswith(str(len(body)).encode())
    assert buffered[0] < 2 * 64 * 1024 + 256 * 1024  # one read past the mark at most


def test_a_stalled_upload_fails_the_handler_read(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    port = serve_handler(calls, HttpLimits(idle_timeout=0.4)).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        reply = read_to_close(sock)  # and nothing more is sent
    assert status_of(reply) == 500
    assert logged(caplog, "BodyError: no request body data for 0.4s")


def test_a_client_that_stops_reading_is_cut_off(
    serve_handler: ServeHandler, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    port = serve_handler(calls, HttpLimits(idle_timeout=0.4)).port
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /firehose HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.0)
        got = bytearray()
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                got += chunk
    assert got.startswith(b"HTTP/1.1 200 OK") and not got.endswith(b"0\r\n\r\n")  # cut short
    assert calls.written < 800 * 65536
    assert logged(caplog, "the client read nothing for 0.4s")


def test_embedded_server_on_a_given_socket_leaves_nothing_behind(calls: Calls) -> None:
    from wasmhost.http import Server
    from wasmhost.net.loop import run

    before = open_fds()

    async def main() -> bytes:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        async with Server(calls) as server:
            await server.start(sock=sock)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = await reader.readuntil(b"Hello, World!")
            writer.close()
            await writer.wait_closed()
        return reply

    assert run(main()).startswith(b"HTTP/1.1 200 OK")
    assert not open_fds() - before
