"""LoopWaiter: a wait woken before the loop armed it leaves nothing registered behind."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvloop

from wasmhost.net.wait import LoopWaiter


@pytest.fixture(params=[asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    factory: Callable[[], asyncio.AbstractEventLoop] = request.param
    running = factory()
    thread = threading.Thread(target=running.run_forever)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(5)
    running.close()


def test_wake_before_arm_still_unregisters_before_returning(loop: asyncio.AbstractEventLoop) -> None:
    waiter = LoopWaiter(loop)
    ours, theirs = socket.socketpair()
    loop.call_soon_threadsafe(time.sleep, 0.3)  # the loop is busy: arm will run late
    threading.Timer(0.05, waiter.wake).start()
    start = time.monotonic()
    waiter.wait([ours.fileno()], [], None)
    # Returned only once the busy loop had armed and disarmed: never with a late arm pending.
    assert 0.25 <= time.monotonic() - start < 1.0
    fd = ours.fileno()
    ours.close()  # what a stopped guest does next: must be safe now
    theirs.close()
    # A new socket reusing the number registers and fires normally: nothing stale was left.
    again, peer = socket.socketpair()
    try:
        assert again.fileno() == fd
        fired = threading.Event()
        removed: list[object] = []

        def register() -> None:
            removed.append(loop.remove_reader(fd))
            loop.add_reader(fd, fired.set)

        loop.call_soon_threadsafe(register)
        peer.send(b"x")
        assert fired.wait(5)
        if isinstance(removed[0], bool):  # asyncio says whether anything was registered
            assert removed == [False]
        loop.call_soon_threadsafe(loop.remove_reader, fd)
    finally:
        again.close()
        peer.close()


def test_readiness_and_timeout_end_a_wait(loop: asyncio.AbstractEventLoop) -> None:
    waiter = LoopWaiter(loop)
    r, w = os.pipe()
    try:
        threading.Timer(0.05, os.write, (w, b"x")).start()
        start = time.monotonic()
        waiter.wait([r], [], 5.0)
        assert time.monotonic() - start < 1.0
        os.read(r, 1)
        start = time.monotonic()
        waiter.wait([r], [], 0.1)
        assert 0.09 <= time.monotonic() - start < 1.0
    finally:
        os.close(r)
        os.close(w)
