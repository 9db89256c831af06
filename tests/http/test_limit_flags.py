"""The wasi:http front end's limits set from ``wasmhost serve`` flags: real processes, real sockets.

Each limit, when it triggers, answers (or closes) as ``HttpLimits`` says and writes one log line.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Served, ServeFactory, run_cli
from tests.http.test_front_end import raw, read_to_close, read_until, status_of
from wasmhost import Module
from wasmhost.cache import CompileCache

Component = Callable[[str], Path]
ServeComponent = Callable[..., Served]


@pytest.fixture
def serve_component(serve: ServeFactory, component: Component, component_cache: CompileCache) -> ServeComponent:
    """``serve_component("echo", *flags)``: ``wasmhost serve --port 0 FLAGS`` of that component."""

    def start(name: str, *flags: str) -> Served:
        Module(component(name), cache=component_cache)  # compiled here: a first compile outlasts serve's 10 s wait
        return serve(None, "--port", "0", *flags, args=[str(component(name))])

    return start


def _one_line(served: Served, pattern: str) -> None:
    """``pattern`` is logged, once (after the server stopped, so the log is complete)."""
    served.read_log_until(pattern)
    served.stop()
    assert len(re.findall(pattern, "".join(served.log))) == 1, "".join(served.log)


def test_a_slowloris_client_gets_408_after_the_header_timeout(serve_component: ServeComponent) -> None:
    served = serve_component("hello", "--header-timeout", "0.5")
    start = time.monotonic()
    reply = b""
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.1)
        for n in range(50):  # one more header line every 0.1 s, never the blank line
            with contextlib.suppress(TimeoutError):
                reply = sock.recv(65536)
            if reply:
                break
            sock.sendall(b"X-%d: y\r\n" % n)
        sock.settimeout(5)
        reply += read_to_close(sock)
    assert 0.4 < time.monotonic() - start < 3
    assert status_of(reply) == 408
    _one_line(served, r"-> 408: headers not complete within 0\.5s")


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve_component: ServeComponent) -> None:
    served = serve_component("hello", "--idle-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until(sock, b"Hello, World!").startswith(b"HTTP/1.1 200 OK")
        start = time.monotonic()
        assert sock.recv(100) == b""  # the server closed it
        assert 0.4 < time.monotonic() - start < 3
    _one_line(served, r"127\.0\.0\.1:\d+: idle for 0\.5s, closed")


def test_a_body_over_max_body_bytes_gets_413(serve_component: ServeComponent) -> None:
    served = serve_component("echo", "--max-body-bytes", "1000")
    declared = raw(served.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n" + b"y" * 1001)
    assert status_of(declared) == 413
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n" % (600, b"y" * 600) * 2)  # past the limit only as it arrives
        assert status_of(read_to_close(sock)) == 413
    at_limit = raw(served.port, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n"
                   + b"y" * 1000)  # fmt: skip
    assert status_of(at_limit) == 200 and at_limit.partition(b"\r\n\r\n")[2].count(b"y") == 1000  # echoed
    served.read_log_until(r"-> 413: Content-Length 1001 over 1000 bytes")
    _one_line(served, r"-> 413: body over 1000 bytes")


def test_headers_over_max_header_bytes_get_431(serve_component: ServeComponent) -> None:
    served = serve_component("hello", "--max-header-bytes", "1024")
    reply = raw(served.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1100 + b"\r\n\r\n")
    assert status_of(reply) == 431
    small = raw(served.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Small: " + b"a" * 900 + b"\r\n\r\n")
    assert small.endswith(b"Hello, World!")
    _one_line(served, r"-> 431: headers over 1024 bytes")


def test_a_component_that_never_answers_gets_504_after_the_request_timeout(serve_component: ServeComponent) -> None:
    served = serve_component("never", "--request-timeout", "0.5")
    start = time.monotonic()
    assert status_of(raw(served.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) == 504
    assert 0.4 < time.monotonic() - start < 3
    _one_line(served, r"-> 504: no response within 0\.5s")


def test_the_limits_reach_every_worker(serve_component: ServeComponent) -> None:
    served = serve_component("echo", "--workers", "2", "--max-body-bytes", "10")
    served.wait_for_workers(2)
    for _ in range(6):  # new connections: the kernel spreads them over both workers
        assert status_of(raw(served.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")) == 413
    assert served.stop(timeout=20)[0] == 0
    assert len(re.findall(r"-> 413: Content-Length 11 over 10 bytes", "".join(served.log))) == 6


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--header-timeout", "0", "argument --header-timeout: '0' must be positive"),
        ("--idle-timeout", "-1", "argument --idle-timeout: '-1' must be positive"),
        ("--request-timeout", "soon", "argument --request-timeout: 'soon' is not a number"),
        ("--max-header-bytes", "0", "argument --max-header-bytes: '0' must be positive"),
        ("--max-body-bytes", "1.5", "argument --max-body-bytes: '1.5' is not a whole number"),
    ],
)
def test_bad_limit_values_are_one_line_exit_2(component: Component, flag: str, value: str, message: str) -> None:
    done = run_cli("serve", f"{flag}={value}", component("hello"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(message), done.stderr
