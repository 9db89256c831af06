"""The C fast path of sock_recv and sock_send (wasmhost/_native/sockio.c) against the Python
host functions it fronts. Two instances of one guest, one with the C path and one without,
make the same call on the same socket state: they must return the same errno, leave the
same guest memory, move the same bytes and count the same in the socket's record."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import wasmhost.instance
from wasmhost import Host, Instance, Module
from wasmhost.wasi.abi import FDFLAG_NONBLOCK, Errno
from wasmhost.wasi.sockets import SOCKET_FUNCTIONS, Socket

P1 = '"wasi_snapshot_preview1"'
WAT = f"""(module
  (import {P1} "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import {P1} "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "recv") (param i32 i32 i32 i32 i32 i32) (result i32)
    (call $recv (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)))
  (func (export "send") (param i32 i32 i32 i32 i32) (result i32)
    (call $send (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4))))"""
PAGE = 65536
#: The same functions with no C in front: what the guest would get without sockio.c.
_UNFRONTED = {"recv_front": "sock_recv", "send_front": "sock_send"}
PYTHON_ONLY = [(name, params, _UNFRONTED.get(method, method)) for name, params, method in SOCKET_FUNCTIONS]


class Side:
    """One instance of the guest, with one end of a fresh socket pair as a guest descriptor."""

    def __init__(self, module: Module, c_path: bool, nonblock: bool) -> None:
        with pytest.MonkeyPatch.context() as patch:
            if not c_path:
                patch.setattr(wasmhost.instance, "SOCKET_FUNCTIONS", PYTHON_ONLY)
            self.instance = Instance(module, Host(stdout=None))
        self.guest, self.peer = socket.socketpair()
        self.peer.setblocking(False)
        self.sock = Socket(self.guest, FDFLAG_NONBLOCK if nonblock else 0)
        self.fd = self.instance._ctx.fds.add(self.sock)

    def memory(self) -> bytes:
        return self.instance._ctx.memory.read(0, PAGE)

    def write(self, ptr: int, data: bytes) -> None:
        self.instance._ctx.memory.write(ptr, data)

    def state(self) -> tuple[Any, ...]:
        io = self.sock.io
        return (io.seq, io.received, io.sent, io.answered, _drain(self.peer), _drain(self.guest))

    def close(self) -> None:
        self.instance.close()
        self.peer.close()


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, OSError):
            return data
        if not chunk:
            return data + b"<eof>"
        data += chunk


@pytest.fixture(scope="module")
def module() -> Module:
    return Module(WAT.encode())


@contextlib.contextmanager
def sides(module: Module, nonblock: bool) -> Iterator[tuple[Side, Side]]:
    """The guest with the C path, and without it."""
    fast, slow = Side(module, True, nonblock), Side(module, False, nonblock)
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


# Values at and around every boundary: inside, at the end of memory, past it, past 4 GiB.
_PTR = st.sampled_from([0, 16, 1024, 4000, PAGE - 16, PAGE - 8, PAGE - 4, PAGE - 2, PAGE - 1, PAGE, 2**32 - 1])
_LEN = st.sampled_from([0, 1, 7, 64, 100, 4096, PAGE, 2**31, 2**32 - 1])


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(["recv", "send"]),
    fd=st.sampled_from(["socket", 1, 99, 2**32 - 1]),
    nonblock=st.booleans(),
    pending=st.binary(max_size=300),
    peer_shut=st.booleans(),
    iovs=st.sampled_from([16, 2000, PAGE - 8, PAGE - 4, 2**32 - 8]),
    iovecs=st.lists(st.tuples(_PTR, _LEN), max_size=4),
    count=st.sampled_from([None, 0, 65, 1024, 1025]),
    flags=st.sampled_from([0, 0, 0, 1, 2, 3, 4]),
    out_len=_PTR,
    out_flags=_PTR,
)
def test_the_c_path_does_what_python_does(
    module: Module, op: str, fd: Any, nonblock: bool, pending: bytes, peer_shut: bool, iovs: int,
    iovecs: list[tuple[int, int]], count: int | None, flags: int, out_len: int, out_flags: int,
) -> None:  # fmt: skip
    # A blocking call that would wait stays out: it waits in Python on both sides (tested below).
    assume(nonblock or peer_shut or (op == "send" and flags == 0))
    array = b"".join(struct.pack("<II", p, n) for p, n in iovecs)
    outcomes = []
    with sides(module, nonblock) as both:
        for side in both:
            if iovs + len(array) <= PAGE:
                side.write(iovs, array)
            side.write(4000, bytes(range(256)) * 8)  # what a send may send
            side.peer.sendall(pending)
            if peer_shut:
                side.peer.shutdown(socket.SHUT_WR)
            number = side.fd if fd == "socket" else fd
            args = [number, iovs, len(iovecs) if count is None else count, flags, out_len, out_flags]
            errno = side.instance.call(op, *(args if op == "recv" else args[:5]))
            outcomes.append((errno, side.memory(), side.state()))
    assert outcomes[0] == outcomes[1]


def test_the_c_path_makes_the_calls_and_counts_them(module: Module) -> None:
    with sides(module, True) as (fast, _slow):
        fast.write(16, struct.pack("<II", 1024, 64))
        for _ in range(3):
            fast.peer.sendall(b"ping")
            assert fast.instance.call("recv", fast.fd, 16, 1, 0, 512, 516) == 0
            assert fast.memory()[1024:1028] == b"ping"
        assert fast.instance.call("recv", fast.fd, 16, 1, 0, 512, 516) == Errno.AGAIN
        assert fast.instance.call("send", fast.fd, 16, 1, 0, 512) == 0
        assert fast.instance.host_calls() == {"sock_recv": 4, "sock_send": 1}
        io = fast.sock.io
        assert (io.received, io.sent, io.seq) == (12, 64, 5)
        # Python sees what C did: poll's edge-awareness and the drain read the same record.
        assert fast.sock.io_seq == 5 and fast.sock.answered


def test_a_blocking_recv_with_nothing_to_read_waits_in_python(module: Module) -> None:
    with sides(module, False) as (fast, _slow):
        fast.write(16, struct.pack("<II", 1024, 64))

        async def late_data() -> tuple[int, float]:
            asyncio.get_running_loop().call_later(0.05, fast.peer.sendall, b"late")
            started = time.monotonic()
            errno = await fast.instance.call_async("recv", fast.fd, 16, 1, 0, 512, 516)
            return errno, time.monotonic() - started

        errno, waited = asyncio.run(late_data())
        assert errno == 0 and waited >= 0.04
        assert fast.memory()[1024:1028] == b"late"
        assert fast.instance.suspensions >= 1


def test_a_closed_socket_is_left_to_python(module: Module) -> None:
    """After fd_close the number is free: C must not reach the old host descriptor."""
    with sides(module, True) as (fast, _slow):
        fast.write(16, struct.pack("<II", 1024, 64))
        fast.instance._ctx.fds.close(fast.fd)
        assert fast.instance.call("recv", fast.fd, 16, 1, 0, 512, 516) == Errno.BADF
        assert fast.instance.call("send", fast.fd, 16, 1, 0, 512) == Errno.BADF
        assert fast.instance.host_calls() == {"sock_recv": 1, "sock_send": 1}
