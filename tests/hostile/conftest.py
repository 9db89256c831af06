"""The hostile-guest harness: a healthy http-hello guest (the neighbour) on the same loop as
each hostile guest, proof that it still serves afterwards, and that nothing leaked.

The session's summary prints how many hostile cases passed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.conftest import open_fds
from wasmhost import Host, Instance, Module
from wasmhost.net.policy import Network, PortMapping

CASES: list[str] = []
REQUEST = b"GET / HTTP/1.1\r\nHost: neighbour\r\nConnection: close\r\n\r\n"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "tests/hostile/" in report.nodeid:
        CASES.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CASES:
        terminalreporter.write_line(f"hostile guests: {len(CASES)} cases passed; none crashed the host or leaked")


class Neighbour:
    """A healthy http-hello instance served on the running loop."""

    def __init__(self, path: Path) -> None:
        network = Network(bind_address="127.0.0.1", ports=[PortMapping(0, 8080)])
        self.instance = Instance(Module(path), Host(network=network, stdout=None))
        self.task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.instance.run_async())
        while not self.instance.listening:
            assert not self.task.done(), self.task
            await asyncio.sleep(0.01)

    async def get(self) -> bytes:
        """One request; returns once the guest has closed its side (no connection left open)."""
        host, port = self.instance.listening[0]
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.write(REQUEST)
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        while self.instance.connections.open:
            await asyncio.sleep(0.005)
        return response

    async def assert_serves(self) -> None:
        response = await self.get()
        assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"Hello, World!"), response

    async def close(self) -> None:
        self.instance.stop()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        self.instance.close()


@pytest.fixture
def hostile_case(guest: Callable[[str], Path], caplog: pytest.LogCaptureFixture) -> Iterator[Callable[..., object]]:
    """``hostile_case(scenario)`` runs ``await scenario(neighbour)`` on a fresh loop beside a neighbour:
    the neighbour serves before and after, and the process's descriptors and threads are back
    to what they were with the neighbour alone. Returns what the scenario returned."""
    caplog.set_level(logging.INFO, logger="wasmhost")

    def run(scenario: Callable[[], object]) -> object:
        async def main() -> object:
            async with _neighbour(guest("http-hello")) as neighbour:
                await neighbour.assert_serves()
                fds, threads = host_fds(), threading.active_count()
                result = await scenario(neighbour)  # type: ignore[operator]
                await neighbour.assert_serves()
                await _settled(fds, threads)
                return result

        return asyncio.run(main())

    yield run


def host_fds() -> dict[int, str]:
    """This process's descriptors and what they are, without modules' memory images (memfds
    that belong to a compiled module, not to an instance, and go with the module object)."""
    found = {}
    for entry in open_fds():
        fd, target = entry.split(" -> ", 1)
        if not target.startswith("/memfd:wasm-memory-image"):
            found[int(fd)] = target
    return found


async def _settled(fds: dict[int, str], threads: int) -> None:
    """Descriptors and threads back to the baseline (the epoch clock may take a tick to park)."""
    for _ in range(100):
        if host_fds() == fds and threading.active_count() <= threads:
            return
        await asyncio.sleep(0.01)
    now = host_fds()
    assert now == fds, f"descriptors left behind: {set(now.items()) - set(fds.items())}"
    assert threading.active_count() <= threads


@asynccontextmanager
async def _neighbour(path: Path) -> AsyncIterator[Neighbour]:
    neighbour = Neighbour(path)
    try:
        await neighbour.start()
        yield neighbour
    finally:
        await neighbour.close()


def guest_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The log lines that name the guest ``name``."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{name}:")]
