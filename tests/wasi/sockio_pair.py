"""One guest, twice: with the C fast path of sock_recv and sock_send (wasmhost/_native/sockio.c)
and without it. The same call on the same socket state must end the same way on both: errno,
guest memory, bytes moved and the socket's record. Used by tests/wasi/test_sockio.py and by
the fuzz target fuzz/sockio.py."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from wasmhost import Host, Instance, Module
from wasmhost.wasi.abi import FDFLAG_NONBLOCK
from wasmhost.wasi.sockets import Socket, Sockets

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
#: A call's outcome: its errno, the guest's whole memory, and the socket's record and buffers.
Outcome = tuple[int, bytes, tuple[Any, ...]]


@functools.cache
def guest() -> Module:
    return Module(WAT.encode())


class Side:
    """The guest with or without the C path, one end of a fresh socket pair as a descriptor."""

    def __init__(self, c_path: bool, nonblock: bool) -> None:
        with pytest.MonkeyPatch.context() as patch:
            if not c_path:
                patch.setattr(Sockets, "fronted", lambda _self, table: table)
            self.instance = Instance(guest(), Host(stdout=None))
        self.guest, self.peer = socket.socketpair()
        self.peer.setblocking(False)
        self.sock = Socket(self.guest, FDFLAG_NONBLOCK if nonblock else 0)
        self.fd = self.instance._ctx.fds.add(self.sock)

    def memory(self) -> bytes:
        return self.instance._ctx.memory.read(0, PAGE)

    def write(self, ptr: int, data: bytes) -> None:
        self.instance._ctx.memory.write(ptr, data)

    def call(
        self, op: str, fd: int | None, args: Iterable[int], pending: bytes, peer_shut: bool,
        writes: Iterable[tuple[int, bytes]],
    ) -> Outcome:  # fmt: skip
        """``op`` ("recv" or "send") on ``fd`` (None: the socket) after the memory ``writes``,
        with ``pending`` sent by the peer and its side shut down if ``peer_shut``."""
        for ptr, data in writes:
            self.write(ptr, data)
        self.peer.sendall(pending)
        if peer_shut:
            self.peer.shutdown(socket.SHUT_WR)
        errno: int = self.instance.call(op, self.fd if fd is None else fd, *args)
        io = self.sock.io
        return errno, self.memory(), (io.seq, io.received, io.sent, io.answered, drain(self.peer), drain(self.guest))

    def close(self) -> None:
        self.instance.close()
        self.peer.close()


@contextlib.contextmanager
def sides(nonblock: bool) -> Iterator[tuple[Side, Side]]:
    """The guest with the C path, and without it."""
    fast = Side(True, nonblock)
    try:
        slow = Side(False, nonblock)
    except BaseException:
        fast.close()
        raise
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


def compare(nonblock: bool, **call: Any) -> Outcome:
    """Make one call on both sides; raise if they differ, else return the outcome."""
    with sides(nonblock) as (fast, slow):
        with_c, without = fast.call(**call), slow.call(**call)
    shown = {**call, "writes": [(ptr, len(data)) for ptr, data in call["writes"]]}
    assert with_c == without, f"{shown}: with the C path {_summary(with_c)}, without {_summary(without)}"
    return with_c


def _summary(outcome: Outcome) -> str:
    errno, memory, state = outcome
    return f"errno {errno}, memory digest {hash(memory):x}, record and buffers {state}"


def drain(sock: socket.socket) -> bytes:
    """What is left to read on ``sock`` now, ``<eof>`` marking the end of the stream."""
    sock.setblocking(False)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:  # BlockingIOError included: nothing more now
            return data
        if not chunk:
            return data + b"<eof>"
        data += chunk
