"""poll_oneoff's idle backoff on real sockets: stale readiness is delayed, never lost; and
epoll_oneoff, which reports as WasmEdge's does."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests.conftest import gc_paused
from wasmhost.wasi import abi, preview1
from wasmhost.wasi.context import WasiContext
from wasmhost.wasi.fdtable import FdTable
from wasmhost.wasi.memory import GuestMemory
from wasmhost.wasi.preview1 import Preview1
from wasmhost.wasi.sockets import Socket

SUBS, EVENTS, COUNT = 0, 1024, 2048
_T = TypeVar("_T")
Setup = tuple[Preview1, bytearray, list[int], list[socket.socket]]


@pytest.fixture
def setup() -> Iterator[Setup]:
    ctx = WasiContext([], [], FdTable(), lambda: None)
    ctx.loop = asyncio.new_event_loop()
    buffer = bytearray(4096)
    ctx.memory = GuestMemory.of_buffer(buffer)
    pairs = [socket.socketpair() for _ in range(2)]
    fds = [ctx.fds.add(Socket(ours)) for ours, _ in pairs]
    yield Preview1(ctx, idle_backoff=0.25), buffer, fds, [theirs for _, theirs in pairs]
    ctx.close()
    ctx.loop.close()
    for _, theirs in pairs:
        theirs.close()


def _subscribe(buffer: bytearray, subs: list[tuple[int, int]]) -> None:
    for i, (kind, fd) in enumerate(subs):
        abi.SUBSCRIPTION.pack_into(buffer, SUBS + 48 * i, 100 + i, kind, abi.SUB_FD.pack(fd).ljust(32, b"\0"))


def _poll(p1: Preview1, buffer: bytearray, n: int, epoll: bool = False) -> tuple[list[int], float]:
    """The events of one call and how long it took, timed with the garbage collector paused:
    a full collection in a test process that has imported every suite takes some 35 ms here,
    and inside the call it would read as a hold."""
    with gc_paused():
        start = time.monotonic()
        _drive(p1, (p1.epoll_oneoff if epoll else p1.poll_oneoff)(SUBS, EVENTS, n, COUNT))
        took = time.monotonic() - start
    count = abi.U32.unpack_from(buffer, COUNT)[0]
    events = [abi.EVENT.unpack_from(buffer, EVENTS + 32 * i)[0] for i in range(count)]
    return events, took


def _drive(p1: Preview1, call: Coroutine[Any, Any, _T]) -> _T:
    """Run a host call to completion on the context's loop, as the guest's fiber would."""
    assert p1.ctx.loop is not None
    return p1.ctx.loop.run_until_complete(call)


def test_ignored_readiness_is_reported_again_with_growing_delay(setup: Setup) -> None:
    p1, buffer, fds, _peers = setup
    _subscribe(buffer, [(abi.EventType.FD_WRITE, fds[0])])
    first, took = _poll(p1, buffer, 1)
    assert first == [100] and took < 0.01  # fresh readiness: at once
    delays = []
    for _ in range(5):  # the guest keeps polling without writing: still told, but later
        events, took = _poll(p1, buffer, 1)
        assert events == [100]
        delays.append(took)
    # Each hold is at least the scheduled one (1, 2, 4, 8, 16 ms); load can only add to it.
    assert all(took >= hold for took, hold in zip(delays, (0.001, 0.002, 0.004, 0.008, 0.016), strict=True)), delays
    assert max(delays) < 0.3


def test_io_or_new_readiness_resets_the_delay(setup: Setup) -> None:
    p1, buffer, fds, peers = setup
    _subscribe(buffer, [(abi.EventType.FD_WRITE, fds[0]), (abi.EventType.FD_READ, fds[1])])
    for _ in range(6):
        _poll(p1, buffer, 2)  # writable fd 0 goes stale, its delay grows
    peers[1].send(b"x")  # new readiness elsewhere is reported at once, alone
    events, took = _poll(p1, buffer, 2)
    assert events == [101] and took < 0.01
    desc = p1.fds.get(fds[0])
    _drive(p1, p1.ctx.blocking(desc, True, lambda: desc.writev([memoryview(b"y")])))  # fd_write's path
    events, took = _poll(p1, buffer, 2)
    assert events == [100] and took < 0.01  # fd 0 is fresh again; fd 1's unread byte is stale now


def test_strict_mode_reports_at_once(setup: Setup) -> None:
    p1, buffer, fds, _ = setup
    strict = Preview1(p1.ctx, idle_backoff=0)
    _subscribe(buffer, [(abi.EventType.FD_WRITE, fds[0])])
    for _ in range(5):
        events, took = _poll(strict, buffer, 1)
        assert events == [100] and took < 0.01


def test_a_reused_descriptor_number_starts_fresh(setup: Setup) -> None:
    """A new socket that gets a closed one's number (a connection per request) is reported
    at once, not held back as if the guest had already seen it."""
    p1, buffer, fds, _ = setup
    _subscribe(buffer, [(abi.EventType.FD_WRITE, fds[0])])
    for _ in range(6):
        _poll(p1, buffer, 1)  # the guest keeps ignoring fd 0: its delay has grown past 10 ms
    p1.fds.close(fds[0])
    ours, theirs = socket.socketpair()
    try:
        assert p1.fds.add(Socket(ours)) == fds[0]
        events, took = _poll(p1, buffer, 1)
        assert events == [100] and took < 0.01
    finally:
        theirs.close()


def test_the_same_subscriptions_again_see_the_state_of_now(setup: Setup) -> None:
    """A server polls the same subscription bytes over and over: each call still starts its
    relative clock afresh, and polls whatever socket now has the host descriptor's number."""
    p1, buffer, fds, peers = setup
    _subscribe(buffer, [(abi.EventType.FD_READ, fds[0])])
    clock = abi.SUB_CLOCK.pack(abi.Clock.MONOTONIC, 20_000_000, 0, 0).ljust(32, b"\0")  # 20 ms from the call
    abi.SUBSCRIPTION.pack_into(buffer, SUBS + 48, 101, abi.EventType.CLOCK, clock)
    for _ in range(2):
        events, took = _poll(p1, buffer, 2)
        assert events == [101] and took >= 0.02
    peers[0].send(b"x")
    assert _poll(p1, buffer, 2)[0] == [100]
    old = p1.fds.get(fds[0])
    assert isinstance(old, Socket)
    number = old.sock.fileno()
    p1.fds.close(fds[0])
    ours, theirs = socket.socketpair()
    try:
        assert ours.fileno() == number and p1.fds.add(Socket(ours)) == fds[0]
        events, took = _poll(p1, buffer, 2)  # the new socket has nothing to read
        assert events == [101] and took >= 0.02
        theirs.send(b"y")
        assert _poll(p1, buffer, 2)[0] == [100]
    finally:
        theirs.close()


def test_kept_subscription_arrays_stay_within_a_budget() -> None:
    """Big arrays are reused too (a server on 50 connections repeats its 51 subscriptions), but
    what a poll keeps never exceeds _KEPT_ITEMS subscriptions, whatever the guest passes."""
    kept: preview1._Kept[int, str] = preview1._Kept()
    for key in range(1000):
        kept.keep(key, "array", 51)
        assert kept.get(key) == "array"
        assert len(kept._values) * 51 == kept._items <= preview1._KEPT_ITEMS
    kept.keep(-1, "huge", preview1._KEPT_ITEMS + 1)
    assert kept.get(-1) is None
    for key in range(1000):
        kept.keep(key, "small", 1)
        assert len(kept._values) <= preview1._KEPT


class _WasmEdgePoller:
    """WasmEdge's epoll_oneoff as its Linux poller does it, on a real epoll: each call adds a
    newly subscribed fd with EPOLLET, *modifies* one subscribed in the previous call (the
    kernel queues it again if it is ready at that moment), and deletes one left out."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.previous: set[int] = set()

    def call(self, subs: list[tuple[int, int, int]]) -> list[int]:
        """``subs``: (userdata, event type, host fd); returns the userdata of what fired, in order."""
        masks: dict[int, int] = {}
        for _userdata, kind, osfd in subs:
            masks[osfd] = masks.get(osfd, 0) | (select.EPOLLOUT if kind == abi.EventType.FD_WRITE else select.EPOLLIN)
        for osfd in self.previous - masks.keys():
            self.epoll.unregister(osfd)
        for osfd, mask in masks.items():
            (self.epoll.modify if osfd in self.previous else self.epoll.register)(osfd, mask | select.EPOLLET)
        self.previous = set(masks)
        fired = dict(self.epoll.poll(0))
        wanted = {abi.EventType.FD_WRITE: select.EPOLLOUT, abi.EventType.FD_READ: select.EPOLLIN}
        return [userdata for userdata, kind, osfd in subs if fired.get(osfd, 0) & wanted[kind]]


def test_epoll_oneoff_reports_what_wasmedge_reports(setup: Setup) -> None:
    """Edge-triggered in name only: WasmEdge re-arms every subscribed fd on each call, so a
    ready fd is reported on every call, as by the level-triggered poll_oneoff (no backoff here:
    WasmEdge has none). Each step compares with WasmEdge's poller run on the same sockets."""
    p1, buffer, fds, peers = setup
    strict = Preview1(p1.ctx, idle_backoff=0)
    wasmedge = _WasmEdgePoller()
    subs = [(abi.EventType.FD_WRITE, fds[0]), (abi.EventType.FD_READ, fds[1])]
    host = [(100 + i, kind, p1.fds.get(fd).os_fd()) for i, (kind, fd) in enumerate(subs)]
    _subscribe(buffer, subs)
    steps = {
        "writable fd 0": lambda: None,
        "again, nothing new": lambda: None,
        "fd 1 gets data": lambda: peers[1].send(b"x"),
        "again, the data unread": lambda: None,
        "more data": lambda: peers[1].send(b"y"),
    }
    seen = {}
    try:
        for step, act in steps.items():
            act()  # a socketpair: the bytes are there when send returns
            expected = wasmedge.call(host)
            events, _took = _poll(strict, buffer, 2, epoll=True)
            assert events == expected, step
            seen[step] = events
    finally:
        wasmedge.epoll.close()
    assert seen["again, nothing new"] == [100] and seen["again, the data unread"] == [100, 101]
