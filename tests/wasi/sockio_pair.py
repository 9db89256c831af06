"""One guest, twice: with the C fast paths of wasmhost/_native/sockio.c (sock_recv, sock_send,
poll_oneoff, sock_accept, fd_fdstat_get, fd_fdstat_set_flags, sock_shutdown, fd_close) and
without them. The same call on the same socket state must end the same way on both: errno,
guest memory, bytes moved, the socket's record, the records of the connections accepted and
the connection counts. Used by tests/wasi/test_sockio*.py and by the fuzz target
fuzz/sockio.py."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from wasmhost import Host, Instance, Module
from wasmhost._native.sockio import IoRecord
from wasmhost.wasi.abi import FDFLAG_NONBLOCK
from wasmhost.wasi.linking import Table
from wasmhost.wasi.preview1 import Preview1
from wasmhost.wasi.sockets import Socket, Sockets

P1 = '"wasi_snapshot_preview1"'
WAT = f"""(module
  (import {P1} "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import {P1} "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
  (import {P1} "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import {P1} "sock_accept" (func $accept (param i32 i32) (result i32)))
  (import {P1} "sock_accept_v2" (func $accept2 (param i32 i32 i32) (result i32)))
  (import {P1} "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import {P1} "fd_fdstat_set_flags" (func $set_flags (param i32 i32) (result i32)))
  (import {P1} "sock_shutdown" (func $shutdown (param i32 i32) (result i32)))
  (import {P1} "fd_close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "fdstat") (param i32 i32) (result i32) (call $fdstat (local.get 0) (local.get 1)))
  (func (export "set_flags") (param i32 i32) (result i32) (call $set_flags (local.get 0) (local.get 1)))
  (func (export "shutdown") (param i32 i32) (result i32) (call $shutdown (local.get 0) (local.get 1)))
  (func (export "close") (param i32) (result i32) (call $close (local.get 0)))
  (func (export "accept") (param i32 i32) (result i32) (call $accept (local.get 0) (local.get 1)))
  (func (export "accept2") (param i32 i32 i32) (result i32)
    (call $accept2 (local.get 0) (local.get 1) (local.get 2)))
  (func (export "poll") (param i32 i32 i32 i32) (result i32)
    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "recv") (param i32 i32 i32 i32 i32 i32) (result i32)
    (call $recv (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)))
  (func (export "send") (param i32 i32 i32 i32 i32) (result i32)
    (call $send (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4))))"""
PAGE = 65536
#: The socket's descriptor number in both guests (after stdin, stdout and stderr).
SOCKET_FD = 3
#: A call's outcome: its errno, the guest's whole memory, and the socket's record and buffers.
Outcome = tuple[int, bytes, tuple[Any, ...]]


@functools.cache
def guest() -> Module:
    return Module(WAT.encode())


class Side:
    """The guest with or without the C path, one end of a fresh socket pair as a descriptor
    (``listener``: a TCP listener on 127.0.0.1 instead, the peer a client not connected yet)."""

    def __init__(self, c_path: bool, nonblock: bool, listener: bool = False) -> None:
        original = Preview1.fronted

        def fronted(preview1: Preview1, table: Table) -> Table:
            self.preview1 = preview1
            return original(preview1, table) if c_path else table

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Preview1, "fronted", fronted)
            if not c_path:
                patch.setattr(Sockets, "fronted", lambda _self, table: table)
            self.instance = Instance(guest(), Host(stdin=None, stdout=None, stderr=None))
        self.listener = listener
        if listener:
            self.guest, self.peer = socket.create_server(("127.0.0.1", 0)), socket.socket()
        else:
            self.guest, self.peer = socket.socketpair()
            self.peer.setblocking(False)
        self.sock = Socket(self.guest, FDFLAG_NONBLOCK if nonblock else 0)
        self.sock.listening = listener
        if listener:  # as the guest's first accept does
            self.instance._ctx.fds.native.accepting(self.instance.connections.counts)
        self.fd = self.instance._ctx.fds.add(self.sock)
        assert self.fd == SOCKET_FD

    def c_calls(self, name: str | None = None) -> int:
        """The calls of ``name`` (None: of every function) the C path answered itself."""
        return sum(env.calls for fn, env in self.instance._store._fronts if name in (None, fn))

    def memory(self) -> bytes:
        return self.instance._ctx.memory.read(0, PAGE)

    def write(self, ptr: int, data: bytes) -> None:
        self.instance._ctx.memory.write(ptr, data)

    def call(
        self, op: str, fd: int | None, args: Iterable[int], pending: bytes, peer_shut: bool,
        writes: Iterable[tuple[int, bytes]], times: int = 1,
    ) -> Outcome:  # fmt: skip
        """``op`` (an export of ``WAT`` that takes ``fd`` first, None: the socket; or "poll",
        whose subscriptions are in memory) after the memory ``writes``, with
        ``pending`` sent by the peer (a listener's peer connects first if there is any) and its
        side shut down if ``peer_shut``; made ``times`` times, the last compared."""
        for ptr, data in writes:
            self.write(ptr, data)
        connected = pending or not self.listener
        if self.listener and pending:
            self.peer.connect(self.guest.getsockname())
        if connected:
            self.peer.sendall(pending)
        if peer_shut and connected:
            self.peer.shutdown(socket.SHUT_WR)
        fds = [] if op == "poll" else [self.fd if fd is None else fd]
        for _ in range(times):
            errno: int = self.instance.call(op, *fds, *args)
        conns = self.instance.connections
        state = (
            _record(self.sock.io), self.preview1._poll.idle_ns, self.accepted(), conns.accepted, conns.open,
            drain(self.peer), drain(self.guest),
        )  # fmt: skip
        return errno, self.memory(), state

    def accepted(self) -> list[tuple[int, tuple[Any, ...]]]:
        """The descriptors after the socket's (the connections accepted) and their records,
        read without making a Python descriptor of a bare one."""
        slots = self.instance._ctx.fds.native._slots
        return [(fd, _record(IoRecord.from_address(slots[fd]))) for fd in range(SOCKET_FD + 1, len(slots)) if slots[fd]]

    def close(self) -> None:
        self.instance.close()
        self.guest.close()
        self.peer.close()


@contextlib.contextmanager
def sides(nonblock: bool, listener: bool = False) -> Iterator[tuple[Side, Side]]:
    """The guest with the C path, and without it."""
    fast = Side(True, nonblock, listener)
    try:
        slow = Side(False, nonblock, listener)
    except BaseException:
        fast.close()
        raise
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


def compare(
    nonblock: bool, prepare: Callable[[Side], None] | None = None, listener: bool = False, **call: Any
) -> Outcome:
    """Make one call on both sides (after ``prepare`` of each); raise if they differ, else
    return the outcome."""
    with sides(nonblock, listener) as (fast, slow):
        if prepare is not None:
            prepare(fast)
            prepare(slow)
        with_c, without = fast.call(**call), slow.call(**call)
    shown = {**call, "writes": [(ptr, len(data)) for ptr, data in call["writes"]]}
    assert with_c == without, f"{shown}: with the C path {_summary(with_c)}, without {_summary(without)}"
    return with_c


def _record(io: IoRecord) -> tuple[Any, ...]:
    """What a record says, but whether it is bare: that is what the C path changes."""
    return (
        io.os_fd >= 0, io.seq, io.received, io.sent, io.answered, tuple(io.seen), io.flags, io.rights, io.inheriting,
        io.pollable, io.listening, io.port,
    )  # fmt: skip


def _summary(outcome: Outcome) -> str:
    errno, memory, state = outcome
    return f"errno {errno}, memory digest {hash(memory):x}, record and buffers {state}"


def drain(sock: socket.socket) -> bytes:
    """What is left to read on ``sock`` now, ``<eof>`` marking the end of the stream."""
    if sock.fileno() < 0:
        return b"<closed>"
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
