"""``serve --workers N``: worker processes share the guest's port, are restarted when they die,
drain on SIGTERM, and a crash loop ends the service with one line."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServeFactory, run_cli

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _worker_pids(served: object, count: int) -> list[int]:
    log = "".join(served.log)  # type: ignore[attr-defined]
    while len(pids := [int(p) for p in re.findall(r"worker \d+ started \(pid (\d+)\)", log)]) < count:
        served.read_log_until(r"worker \d+ started")  # type: ignore[attr-defined]
        log = "".join(served.log)  # type: ignore[attr-defined]
    return pids


def _owners(port: int) -> Counter[int]:
    """How many established connections to ``port`` each process holds (from ``ss``)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    return Counter(int(pid) for pid in re.findall(r"pid=(\d+)", out))


def _get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return b"".join(iter(lambda: sock.recv(65536), b""))


def test_two_workers_share_one_port_and_its_connections(serve: ServeFactory) -> None:
    served = serve("http-hello", "--workers", "2")
    served.wait_for_workers(2)
    pids = _worker_pids(served, 2)
    conns = []
    try:
        for _ in range(40):
            conn = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            conn.sendall(REQUEST)
            assert conn.recv(65536).endswith(b"Hello, World!")
            conns.append(conn)
        owners = _owners(served.port)
    finally:
        for conn in conns:
            conn.close()
    assert set(owners) == set(pids), owners
    assert sum(owners.values()) == 40 and min(owners.values()) >= 5, owners
    assert served.stop(signal.SIGTERM, timeout=15)[0] == 0


def test_a_killed_worker_comes_back_and_costs_only_its_connections(serve: ServeFactory) -> None:
    served = serve("http-hello", "--workers", "2")
    served.wait_for_workers(2)
    victim = _worker_pids(served, 2)[0]
    wrk = subprocess.Popen(
        ["wrk", "-t1", "-c10", "-d3s", f"http://127.0.0.1:{served.port}/"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1)
    held = _owners(served.port)[victim]
    subprocess.run(["kill", "-KILL", str(victim)], check=True)
    out, _ = wrk.communicate(timeout=30)
    served.read_log_until(rf"worker 1 \(pid {victim}\) was killed by SIGKILL; restarting")
    served.read_log_until(r"worker 1 started")
    served.read_log_until(r"\[1\]: .*listening on")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = sum(int(n) for n in errors.groups()) if errors else 0
    assert "Non-2xx" not in out, out
    assert failed <= max(held, 1) + 10, out  # its connections, plus what sat in its accept queue
    assert _get(served.port).endswith(b"Hello, World!")
    assert served.stop(signal.SIGTERM, timeout=15)[0] == 0


def test_sigterm_under_load_drains_without_failing_a_started_request(serve: ServeFactory) -> None:
    """Every request the server read gets its whole answer; a connection closed between
    requests has received every answer, so a client may retry what it had not sent yet."""
    served = serve("http-hello", "--workers", "2")
    served.wait_for_workers(2)

    async def client(stop: asyncio.Event) -> tuple[int, int]:
        done = broken = 0
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        while not stop.is_set():
            writer.write(REQUEST)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                partial = getattr(exc, "partial", b"")
                if partial:
                    broken += 1  # a response had started and was cut off
                writer.close()
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
                except ConnectionError:
                    return done, broken  # the service is gone
                continue
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
            done += 1
        writer.close()
        return done, broken

    async def main() -> list[tuple[int, int]]:
        stop = asyncio.Event()
        clients = [asyncio.create_task(client(stop)) for _ in range(8)]
        await asyncio.sleep(1)
        served.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.5)
        stop.set()
        return await asyncio.gather(*clients)

    results = asyncio.run(main())
    code = served.proc.wait(20)
    assert code == 0
    assert sum(done for done, _ in results) > 100
    assert sum(broken for _, broken in results) == 0, results


def test_workers_that_keep_dying_end_the_service_with_one_line(guest: Callable[[str], Path]) -> None:
    done = run_cli("serve", "--workers", "2", str(guest("exit-code")), "3", timeout=60)
    assert done.returncode == 1
    assert re.search(r"workers keep dying right after starting \(5 times in a row, last: exited with code 3\)",
                     done.stderr), done.stderr  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_is_one_line(guest: Callable[[str], Path], value: str) -> None:
    done = run_cli("serve", "--workers", value, str(guest("http-hello")))
    assert done.returncode == 2
    assert done.stderr.strip() == f"wasmhost: --workers {value}: expected a positive number or 'auto'"


def test_a_second_sigint_stops_at_once_while_draining(serve: ServeFactory) -> None:
    served = serve("http-hello", "--workers", "2", "--graceful-timeout", "30")
    served.wait_for_workers(2)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as busy:
        busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half a request: the drain must wait for it
        time.sleep(0.3)
        served.proc.send_signal(signal.SIGINT)
        served.read_log_until(r"draining 2 worker")
        start = time.monotonic()
        served.proc.send_signal(signal.SIGINT)
        code = served.proc.wait(10)
    assert code == 130
    assert time.monotonic() - start < 3
