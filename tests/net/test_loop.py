"""Guests on the application's own event loop: concurrency, loop latency, idle CPU, no leaks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import ServeFactory, gc_paused, open_fds
from wasmhost import GuestTrap, Host, Instance, Interrupted, Module
from wasmhost.net.policy import Network, PortMapping

Guest = Callable[[str], Path]
LOCAL = Network(bind_address="127.0.0.1", ports=[PortMapping(0, 8080)])


@contextlib.asynccontextmanager
async def serving(module: Module, host: Host) -> AsyncIterator[tuple[Instance, asyncio.Task[int]]]:
    """Run a server guest as a task of this loop until the block ends, then stop it."""
    instance = Instance(module, host)
    task = asyncio.create_task(instance.run_async())
    try:
        for _ in range(500):
            if instance.listening or task.done():
                break
            await asyncio.sleep(0.01)
        assert instance.listening, "guest did not start listening"
        yield instance, task
    finally:
        instance.stop()
        with contextlib.suppress(Interrupted, GuestTrap):
            await task
        instance.close()


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


class Ticker:
    """Records how late a 10 ms asyncio sleep wakes up: the loop's responsiveness."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            self.lateness.append(time.monotonic() - start - 0.01)

    def worst(self) -> float:
        """Worst lateness since the last call (or ``reset``)."""
        worst, self.lateness = max(self.lateness), []
        return worst

    def reset(self) -> None:
        self.lateness = []

    def cancel(self) -> None:
        self._task.cancel()


#: The ticker's worst lateness allowed beside two servers, idle or loaded.
LATE_S = 0.020


async def _load(ports: list[int]) -> None:
    wrk = [
        await asyncio.create_subprocess_exec(
            "wrk", "-t1", "-c10", "-d2s", f"http://127.0.0.1:{port}/", stdout=asyncio.subprocess.PIPE
        )
        for port in ports
    ]
    for proc in wrk:
        out = (await proc.communicate())[0].decode()
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        assert rate > 500, out
        assert "Non-2xx" not in out and "Socket errors" not in out, out


def test_two_servers_and_a_ticker_share_one_loop(guest: Guest) -> None:
    module = Module(guest("http-hello"))

    async def main() -> tuple[float, float]:
        ticker = Ticker()
        host = Host(network=LOCAL, stdout=None)
        async with serving(module, host) as (one, _), serving(module, host) as (two, _):
            ports = [one.listening[0][1], two.listening[0][1]]
            assert ports[0] != ports[1]
            bodies = await asyncio.gather(*(_get(port) for port in ports for _ in range(20)))
            assert all(body.endswith(b"Hello, World!") for body in bodies)
            worst = []
            phases: list[Callable[[], Awaitable[None]]] = [lambda: asyncio.sleep(1.0), lambda: _load(ports)]
            for phase in phases:
                # A phase over the bound is measured once more: this shared VM stalls now and
                # then (24.8 ms once while idle in CI). A server that blocks the loop is late
                # in every run: 100 ms or more (tests/test_fiber.py's spinning guest).
                for _attempt in range(2):
                    ticker.reset()
                    await phase()
                    late = ticker.worst()
                    if late < LATE_S:
                        break
                worst.append(late)
        ticker.cancel()
        return worst[0], worst[1]

    with gc_paused():
        idle, loaded = asyncio.run(main())
    assert idle < LATE_S, f"worst lateness while idle {idle * 1e3:.1f} ms"
    assert loaded < LATE_S, f"worst lateness under load {loaded * 1e3:.1f} ms"


def test_no_descriptor_leaks_after_stop_or_panic(guest: Guest) -> None:
    module = Module(guest("http-hello"))
    Instance(module, Host(network=LOCAL)).close()  # wasmtime's per-module memory image is not ours

    async def main() -> None:
        host = Host(network=LOCAL, stdout=None, env={"PANIC_PATH": "/boom"}, stderr=None)
        async with serving(module, host) as (instance, _):
            port = instance.listening[0][1]
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
            assert (await _get(port)).endswith(b"Hello, World!")
        for conn in idle:
            conn.close()
        async with serving(module, host) as (instance, task):
            port = instance.listening[0][1]
            conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /boom HTTP/1.1\r\n\r\n")
            with pytest.raises(GuestTrap, match="unreachable"):
                await task
            assert await reader.read() == b""
            writer.close()
            for conn in conns:
                conn.close()

    gc.collect()  # modules of earlier tests free their wasmtime memory images when collected
    before = open_fds()
    asyncio.run(main())
    assert not open_fds() - before


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_cpu_share(serve: ServeFactory, *flags: str) -> float:
    """CPU share of a server guest holding 10 idle keep-alive connections, over 2 s."""
    server = serve("http-hello", *flags)
    conns = []
    for _ in range(10):
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(1000).endswith(b"Hello, World!")
        conns.append(conn)
    time.sleep(0.5)
    start_cpu, start = _cpu_seconds(server.proc.pid), time.monotonic()
    time.sleep(2)
    share = (_cpu_seconds(server.proc.pid) - start_cpu) / (time.monotonic() - start)
    for conn in conns:
        conn.close()
    return share


MIO_087 = ("--env", "POLL_STYLE=mio-0.8.7")


def test_idle_keep_alive_connections_use_under_5_percent(serve: ServeFactory) -> None:
    """Polling like mio_wasi 0.8.7 (every connection re-subscribed for writability)."""
    share = _idle_cpu_share(serve, *MIO_087)
    assert share < 0.05, f"idle server used {share:.1%} of a core"


def test_strict_level_triggering_would_spin(serve: ServeFactory) -> None:
    """The measurement can fail: without the backoff the same guest busy-loops."""
    share = _idle_cpu_share(serve, *MIO_087, "--idle-backoff", "0")
    assert share > 0.5, f"expected a busy loop, measured {share:.1%}"


def test_mio_style_guest_serves_keep_alive_load(serve: ServeFactory) -> None:
    from tests.net.test_serve import _keep_alive_client

    server = serve("http-hello", *MIO_087)

    async def main() -> list[int]:
        return await asyncio.gather(*(_keep_alive_client(server.port, 20) for _ in range(50)))

    assert asyncio.run(main()) == [20] * 50
