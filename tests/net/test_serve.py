"""``wasmhost serve`` with real clients: curl, http.client, raw TCP/UDP sockets, asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from tests.conftest import ServeFactory, free_port, serve_with_listen_argument

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def _keep_alive_client(port: int, requests: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ok = 0
    try:
        for _ in range(requests):
            writer.write(REQUEST)
            status, body = await _read_response(reader)
            ok += status == 200 and body == b"Hello, World!"
    finally:
        writer.close()
        await writer.wait_closed()
    return ok


def test_curl_gets_hello_world(serve: ServeFactory) -> None:
    server = serve("http-hello")
    done = subprocess.run(
        ["curl", "-sS", f"http://127.0.0.1:{server.port}/"], capture_output=True, text=True, timeout=10
    )
    assert done.stdout == "Hello, World!"
    head = subprocess.run(["curl", "-sSI", f"http://127.0.0.1:{server.port}/"], capture_output=True, text=True)
    assert head.stdout.startswith("HTTP/1.1 200 OK") and "content-length: 13" in head.stdout
    missing = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{server.port}/x"]
    )
    assert missing.returncode == 0


@pytest.mark.parametrize("dash", [False, True], ids=["plain", "double-dash"])
def test_serve_passes_guest_arguments(serve: ServeFactory, dash: bool) -> None:
    """``serve app.wasm [--] 127.0.0.1:PORT``: the listen address reaches the guest as argv[1]."""
    server = serve_with_listen_argument(serve, "http-hello", dash=dash)
    done = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{server.port}/"], capture_output=True, text=True)
    assert done.stdout == "Hello, World!", done.stderr


def test_http_client_bodies_keep_the_connection_in_sync(serve: ServeFactory) -> None:
    server = serve("http-hello")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/nope", body=b"x" * 100_000)
        assert conn.getresponse().read() == b"Not Found"
        conn.request("POST", "/nope", body=iter([b"chunk-1", b"chunk-2"]), encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 404 and response.read() == b"Not Found"
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello, World!"
    finally:
        conn.close()


def test_200_keep_alive_connections_times_50_requests(serve: ServeFactory) -> None:
    server = serve("http-hello")

    async def main() -> list[int]:
        return await asyncio.gather(*(_keep_alive_client(server.port, 50) for _ in range(200)))

    assert asyncio.run(main()) == [50] * 200


def test_ten_megabytes_round_trip_through_tcp_echo(serve: ServeFactory) -> None:
    server = serve("tcp-echo")
    payload = os.urandom(10 * 1024 * 1024)
    received = bytearray()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:

        def reader() -> None:
            while chunk := conn.recv(1 << 16):
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        thread.join(60)
    assert len(received) == len(payload) and bytes(received) == payload


def test_echo_v2_guest(serve: ServeFactory) -> None:
    server = serve("echo-v2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"over the v2 ABI")
        conn.shutdown(socket.SHUT_WR)
        assert conn.makefile("rb").read() == b"over the v2 ABI"
    server.read_log_until(r"peer 127\.0\.0\.1:\d+")


def test_udp_echo(serve: ServeFactory) -> None:
    server = serve("udp-echo")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.bind(("127.0.0.1", 0))
        for payload in (b"ping", os.urandom(60_000)):
            client.sendto(payload, ("127.0.0.1", server.port))
            data, peer = client.recvfrom(65536)
            assert data == payload and peer == ("127.0.0.1", server.port)


def test_misbehaving_clients_do_not_stall_others(serve: ServeFactory) -> None:
    server = serve("http-hello")
    address = ("127.0.0.1", server.port)
    # Reset in the middle of a request.
    for _ in range(20):
        rude = socket.create_connection(address)
        rude.sendall(b"GET / HTTP/1.1\r\nHo")
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.close()
    # Half-close after a full request: the reply still arrives.
    with socket.create_connection(address, timeout=5) as half:
        half.sendall(REQUEST)
        half.shutdown(socket.SHUT_WR)
        assert b"Hello, World!" in half.makefile("rb").read()
    # A trickler sends one byte per 100 ms while a normal client is served promptly.
    with socket.create_connection(address, timeout=10) as slow:
        stop = threading.Event()

        def trickle() -> None:
            for byte in REQUEST:
                if stop.wait(0.1):
                    return
                slow.send(bytes([byte]))

        thread = threading.Thread(target=trickle)
        thread.start()
        try:
            latencies = []
            for _ in range(20):
                start = time.monotonic()
                conn = http.client.HTTPConnection(*address, timeout=5)
                conn.request("GET", "/")
                assert conn.getresponse().read() == b"Hello, World!"
                conn.close()
                latencies.append(time.monotonic() - start)
                time.sleep(0.05)
            assert max(latencies) < 0.5, latencies
            thread.join(10)
            slow.settimeout(5)
            assert b"Hello, World!" in slow.recv(4096)
        finally:
            stop.set()
            thread.join()
    assert server.proc.poll() is None


def test_port_in_use_gives_addrinuse_and_one_clear_line(serve: ServeFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve("http-hello", "-p", f"{port}:8080", wait=False)
        code = server.proc.wait(30)
        assert server.proc.stderr is not None
        log = server.proc.stderr.read()
    assert code == 1
    assert f"wasmhost: http-hello.wasm: cannot bind 127.0.0.1:{port}: Address already in use\n" in log
    assert "bind failed: errno 3" in log  # the guest saw ADDRINUSE (3)
    assert "Traceback" not in log


def test_guest_panic_while_serving(serve: ServeFactory) -> None:
    server = serve("http-hello", "--env", "PANIC_PATH=/boom")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(100) == b""  # the guest died; its sockets are closed
    code = server.proc.wait(10)
    assert server.proc.stderr is not None
    log = server.proc.stderr.read()
    assert code == 1
    assert "http-hello: panic requested on /boom" in log  # the guest's own stderr
    assert "guest trapped: unreachable" in log
    assert "Traceback" not in log


def test_blocking_guest_is_stopped_by_sigterm(serve: ServeFactory) -> None:
    """udp-echo blocks in sock_recv_from; the wait is interrupted, the process exits 0."""
    server = serve("udp-echo")
    code, elapsed = server.stop(signal.SIGTERM)
    assert code == 0 and elapsed < 1.0, "".join(server.log)


def test_serves_on_ipv6(serve: ServeFactory) -> None:
    server = serve("http-hello", "--host", "::1")
    assert "listening on [::1]:" in "".join(server.log)
    done = subprocess.run(["curl", "-sSg", f"http://[::1]:{server.port}/"], capture_output=True, text=True, timeout=10)
    assert done.stdout == "Hello, World!", done.stderr


def test_sigterm_and_sigint_stop_cleanly_within_a_second(serve: ServeFactory) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = serve("http-hello")
        idle = socket.create_connection(("127.0.0.1", server.port))
        code, elapsed = server.stop(sig)
        assert code == 0 and elapsed < 1.0, "".join(server.log)
        # The guest's connection was closed, or reset when still waiting in the listen backlog.
        with contextlib.suppress(ConnectionResetError):
            assert idle.recv(10) == b""
        idle.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5)  # the listener is gone


def test_outbound_denied_by_default_allowed_by_flag(serve: ServeFactory) -> None:
    from tests.conftest import run_cli

    upstream = serve("http-hello")
    target = ("127.0.0.1", str(upstream.port), "/")
    denied = run_cli("run", "rust-guests/out/http-get.wasm", *target)
    assert denied.returncode == 1
    assert "http-get: connect failed: errno 2" in denied.stderr  # ACCES
    assert f"connect to 127.0.0.1:{upstream.port} denied by network policy" in denied.stderr
    allowed = run_cli("run", "--allow-outbound", f"127.0.0.1:{upstream.port}", "rust-guests/out/http-get.wasm", *target)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == "Hello, World!"
    other_port = run_cli(
        "run", "--allow-outbound", f"127.0.0.1:{free_port()}", "rust-guests/out/http-get.wasm", *target
    )
    assert other_port.returncode == 1
    cidr = run_cli("run", "--allow-outbound", "127.0.0.0/8", "rust-guests/out/http-get.wasm", "localhost", *target[1:])
    assert cidr.returncode == 0 and cidr.stdout == "Hello, World!"
