"""``wasmhost serve`` of a wasi:http component: the h11 front end with wasmhost's WASI 0.2, from a
file or an ``oci://`` reference, with workers, drained on SIGTERM."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServeFactory, run_cli
from tests.oci.conftest import Registry, registry  # noqa: F401 - the registry fixture, for the oci:// case
from wasmhost._native.core import RESIDENT_INSTANCES

Component = Callable[[str], Path]


def _get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_serve_answers_from_a_fresh_instance_per_request(serve: ServeFactory, component: Component) -> None:
    served = serve(None, "--port", "0", args=[str(component("hello"))])
    assert any(f"serving wasi:http on http://127.0.0.1:{served.port}" in line for line in served.log)
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    for _ in range(5):  # keep-alive: one connection, five requests
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"Hello, World!")
    conn.close()
    assert served.stop(signal.SIGTERM, timeout=15)[0] == 0


def test_a_fresh_instance_never_sees_an_earlier_requests_memory(serve: ServeFactory, component: Component) -> None:
    """More requests than the pooled engine has resident slots, so each slot (its memory kept
    resident and reset by copying) serves several: every instance must start as new. The same
    guest with reused instances counts up, so the check can fail."""
    requests = 3 * RESIDENT_INSTANCES
    fresh = serve(None, "--port", "0", args=[str(component("counter"))])
    assert [_get(fresh.port) for _ in range(requests)] == [(200, b"1 4194304")] * requests
    assert fresh.stop(signal.SIGTERM, timeout=15)[0] == 0
    reused = serve(None, "--port", "0", "--reuse-instances", "3", args=[str(component("counter"))])
    counts = [_get(reused.port)[1].split()[0] for _ in range(6)]
    assert counts == [b"1", b"2", b"3", b"1", b"2", b"3"], counts
    assert reused.stop(signal.SIGTERM, timeout=15)[0] == 0


def test_serve_with_reused_instances_and_a_trap(serve: ServeFactory, component: Component) -> None:
    served = serve(None, "--port", "0", "--reuse-instances", "20", args=[str(component("trap"))])
    assert _get(served.port)[0] == 500
    assert _get(served.port)[0] == 500  # a trap never takes the server down
    assert served.stop(signal.SIGTERM, timeout=15)[0] == 0


def test_sigterm_lets_a_request_in_flight_finish(serve: ServeFactory, component: Component) -> None:
    served = serve(None, "--port", "0", args=[str(component("echo"))])
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        time.sleep(0.5)
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(b"world")
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    # The whole echo, chunked; then the draining server closed the connection (recv saw EOF).
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), reply
    assert served.proc.wait(15) == 0


def test_two_workers_serve_one_component_port(serve: ServeFactory, component: Component) -> None:
    served = serve(None, "--port", "0", "--workers", "2", args=[str(component("hello"))])
    served.wait_for_workers(2)
    assert all(_get(served.port) == (200, b"Hello, World!") for _ in range(6))
    assert served.stop(signal.SIGTERM, timeout=20)[0] == 0


@pytest.mark.parametrize("format", ["image", "artifact"])
def test_serve_a_component_from_a_registry(
    serve: ServeFactory,
    component: Component,
    registry: Registry,  # noqa: F811 - the imported fixture
    format: str,
) -> None:
    ref = f"{registry.host}/components/hello:{format}"
    pushed = run_cli("oci", "push", "--format", format, component("hello"), ref, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    served = serve(f"oci://{ref}", "--port", "0")
    assert _get(served.port) == (200, b"Hello, World!")
    assert served.stop(signal.SIGTERM, timeout=15)[0] == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "argument --port: '70000' is not a port number (0 to 65535)"),
        (["--reuse-instances", "0"], "argument --reuse-instances: '0' must be positive"),
    ],
)
def test_bad_serve_flags_are_one_line(component: Component, flags: list[str], message: str) -> None:
    done = run_cli("serve", *flags, component("hello"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(message)


def test_fuel_reaches_a_served_component(serve: ServeFactory, component: Component) -> None:
    served = serve(None, "--port", "0", "--fuel", "10", args=[str(component("rust-hello"))])
    assert _get(served.port)[0] == 500  # one request of this guest takes about 100 units
    assert "fuel" in served.read_log_until("-> 500").string  # the one log line says why
    assert served.stop(signal.SIGTERM, timeout=15)[0] == 0
