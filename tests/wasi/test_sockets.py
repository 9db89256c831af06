"""The socket ABI without a guest: dispatch by type, address codecs, options, getaddrinfo."""

from __future__ import annotations

import asyncio
import contextlib
import errno as os_errno
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from wasmhost import Module
from wasmhost.net.policy import Network, Rule
from wasmhost.wasi import linking
from wasmhost.wasi.abi import FDFLAG_NONBLOCK, Errno, WasiError
from wasmhost.wasi.context import WasiContext
from wasmhost.wasi.fdtable import FdTable
from wasmhost.wasi.memory import GuestMemory
from wasmhost.wasi.sockets import SOCKET_FUNCTIONS, Socket, Sockets


@contextlib.contextmanager
def _sockets(network: Network) -> Iterator[tuple[Sockets, bytearray]]:
    ctx = WasiContext([], [], FdTable(), lambda: None)
    ctx.loop = asyncio.new_event_loop()
    buffer = bytearray(65536)
    ctx.memory = GuestMemory.of_buffer(buffer)
    try:
        yield Sockets(ctx, network, "test"), buffer
    finally:
        ctx.close()
        ctx.loop.close()


@pytest.fixture
def abi() -> Iterator[tuple[Sockets, bytearray]]:
    with _sockets(Network()) as pair:
        yield pair


def _drive(sockets: Sockets, call: Coroutine[Any, Any, None]) -> None:
    """Run a blocking host call to completion on the context's loop, as the guest's fiber would."""
    assert sockets.ctx.loop is not None
    sockets.ctx.loop.run_until_complete(call)


def _import_module(*imports: tuple[str, int]) -> Module:
    funcs = "".join(
        f'(import "wasi_snapshot_preview1" "{name}" (func (param {" i32" * n}) (result i32)))' for name, n in imports
    )
    return Module(f"(module {funcs})".encode())


@pytest.mark.parametrize(
    ("name", "params", "method"),
    [
        ("sock_accept", 2, "sock_accept_v1"),
        ("sock_accept", 3, "sock_accept_v2"),
        ("sock_recv_from", 7, "sock_recv_from_v1"),
        ("sock_recv_from", 8, "sock_recv_from_v2"),
        ("sock_getlocaladdr", 4, "sock_getlocaladdr_v1"),
        ("sock_getlocaladdr", 3, "sock_getlocaladdr_v2"),
        ("sock_bind_v2", 3, "sock_bind_v2"),
    ],
)
def test_imports_dispatch_by_type(name: str, params: int, method: str) -> None:
    table = linking.table_of(_Names(), SOCKET_FUNCTIONS)
    funcs, missing = linking.link(_import_module((name, params)).imports, table)
    assert missing == []
    assert funcs[("wasi_snapshot_preview1", name)][0].__name__ == method


def test_wrong_arity_is_an_unknown_import() -> None:
    table = linking.table_of(_Names(), SOCKET_FUNCTIONS)
    _funcs, missing = linking.link(_import_module(("sock_accept", 5)).imports, table)
    assert [m.name for m in missing] == ["sock_accept"]


class _Names:
    """Stands in for ``Sockets``: each method is a function named after itself."""

    def __getattr__(self, name: str) -> object:
        def method(*_args: int) -> None:
            pass

        method.__name__ = name
        return method


def _address(buffer: bytearray, ptr: int, raw: bytes) -> None:
    struct.pack_into("<II", buffer, ptr, ptr + 8, len(raw))
    buffer[ptr + 8 : ptr + 8 + len(raw)] = raw


def test_address_forms(abi: tuple[Sockets, bytearray]) -> None:
    sockets, buffer = abi
    _address(buffer, 0, bytes([127, 0, 0, 1]))
    assert sockets._address(0, storage=False) == (1, ipaddress.ip_address("127.0.0.1"))
    _address(buffer, 0, ipaddress.ip_address("::1").packed)
    assert sockets._address(0, storage=False) == (2, ipaddress.ip_address("::1"))
    storage = struct.pack("<H", 1) + bytes([10, 1, 2, 3])
    _address(buffer, 0, storage.ljust(128, b"\0"))
    assert sockets._address(0, storage=True) == (1, ipaddress.ip_address("10.1.2.3"))
    for storage_allowed, raw in [(False, bytes(128)), (True, bytes(5))]:
        _address(buffer, 0, raw)
        with pytest.raises(WasiError) as info:
            sockets._address(0, storage=storage_allowed)
        assert info.value.errno == Errno.INVAL


def test_address_pointer_outside_memory_faults(abi: tuple[Sockets, bytearray]) -> None:
    sockets, buffer = abi
    struct.pack_into("<II", buffer, 0, 65535, 16)
    with pytest.raises(WasiError) as info:
        sockets._address(0, storage=False)
    assert info.value.errno == Errno.FAULT


def test_generation_1_numbering_is_detected(abi: tuple[Sockets, bytearray]) -> None:
    sockets, buffer = abi
    sockets.sock_open(0, 1, 100)  # G1: INET4, STREAM
    desc = sockets.fds.get(struct.unpack_from("<I", buffer, 100)[0])
    assert isinstance(desc, Socket)
    assert (desc.sock.family, desc.sock.type) == (socket.AF_INET, socket.SOCK_STREAM)


def test_sock_open_rejects_any_and_unix(abi: tuple[Sockets, bytearray]) -> None:
    sockets, _ = abi
    for family, kind, errno in [(3, 2, Errno.NOSYS), (9, 2, Errno.INVAL), (1, 7, Errno.INVAL)]:
        with pytest.raises(WasiError) as info:
            sockets.sock_open(family, kind, 100)
        assert info.value.errno == errno


def test_options_report_wasi_values(abi: tuple[Sockets, bytearray]) -> None:
    sockets, buffer = abi
    sockets.sock_open(1, 1, 100)  # UDP
    fd = struct.unpack_from("<I", buffer, 100)[0]
    struct.pack_into("<I", buffer, 200, 4)
    sockets.sock_getsockopt(fd, 0, 1, 300, 200)  # SO_TYPE
    assert struct.unpack_from("<I", buffer, 300)[0] == 1  # WASI DGRAM, not Linux's 2
    struct.pack_into("<i", buffer, 400, 1)
    sockets.sock_setsockopt(fd, 0, 0, 400, 4)  # SO_REUSEADDR
    sockets.sock_getsockopt(fd, 0, 0, 300, 200)
    assert struct.unpack_from("<I", buffer, 300)[0] == 1
    struct.pack_into("<qq", buffer, 400, 2, 500_000)
    sockets.sock_setsockopt(fd, 0, 11, 400, 16)  # SO_RCVTIMEO is kept by the host
    struct.pack_into("<I", buffer, 200, 16)
    sockets.sock_getsockopt(fd, 0, 11, 300, 200)
    assert struct.unpack_from("<qq", buffer, 300) == (2, 500_000)
    for level, name in [(1, 0), (0, 15)]:
        with pytest.raises(WasiError) as info:
            sockets.sock_getsockopt(fd, level, name, 300, 200)
        assert info.value.errno == Errno.INVAL


def _listener(sockets: Sockets, buffer: bytearray) -> int:
    """A guest TCP listener on 127.0.0.1 (its address in ``sockets.listening``)."""
    sockets.sock_open(1, 2, 100)  # INET4, STREAM
    listener: int = struct.unpack_from("<I", buffer, 100)[0]
    buffer[200:204] = bytes([127, 0, 0, 1])
    struct.pack_into("<II", buffer, 300, 200, 4)
    sockets.sock_bind(listener, 300, 0)
    sockets.sock_listen(listener, 8)
    return listener


@contextlib.contextmanager
def _accepted(sockets: Sockets, buffer: bytearray) -> Iterator[tuple[socket.socket, int]]:
    """A client connected to a guest listener on 127.0.0.1, and the guest's accepted fd."""
    listener = _listener(sockets, buffer)
    with socket.create_connection(sockets.listening[0]) as peer:
        _drive(sockets, sockets.sock_accept_v1(listener, 400))
        yield peer, struct.unpack_from("<I", buffer, 400)[0]


def _native_accept_errno(sock: socket.socket) -> int:
    sock.setblocking(False)
    with pytest.raises(OSError) as info:
        sock.accept()
    assert info.value.errno is not None
    return info.value.errno


def test_accept_fails_as_on_linux_whether_or_not_the_backlog_is_looked_at_first(
    abi: tuple[Sockets, bytearray],
) -> None:
    """An empty backlog is AGAIN without the system call; the rest are the kernel's own errors."""
    sockets, buffer = abi
    listener = _listener(sockets, buffer)
    sockets.sock_open(1, 2, 104)  # a stream socket that never listens
    sockets.sock_open(1, 1, 108)  # UDP
    fds = [listener, *struct.unpack_from("<II", buffer, 104)]
    for fd in fds:
        sockets.fds.get(fd).flags |= FDFLAG_NONBLOCK
    with socket.socket() as idle, socket.socket() as bound, socket.socket(type=socket.SOCK_DGRAM) as udp:
        bound.bind(("127.0.0.1", 0))
        bound.listen()
        native = dict(zip(fds, map(_native_accept_errno, [bound, idle, udp]), strict=True))
    assert sorted(native.values()) == sorted([os_errno.EAGAIN, os_errno.EINVAL, os_errno.EOPNOTSUPP])
    for fd, expected in native.items():
        with pytest.raises(WasiError) as info:
            _drive(sockets, sockets.sock_accept_v1(fd, 400))
        assert info.value.errno.name == os_errno.errorcode[expected][1:], fd
    sockets.stop_accepting()  # the listener's host socket is gone: accept fails, never AGAIN
    with pytest.raises(WasiError) as info:
        _drive(sockets, sockets.sock_accept_v1(listener, 400))
    assert info.value.errno == Errno.NOTSUP


@pytest.mark.parametrize("nodelay", [True, False])
def test_accepted_connections_get_tcp_nodelay_from_the_policy(nodelay: bool) -> None:
    """Set once on the listener, which accepted sockets inherit (Linux), not per accept."""
    with _sockets(Network(nodelay=nodelay)) as (sockets, buffer), _accepted(sockets, buffer) as (_, fd):
        accepted = sockets.fds.get(fd)
        assert isinstance(accepted, Socket)
        assert accepted.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == int(nodelay)


def _what_comes_next(case: str, peer: socket.socket) -> Callable[[], None] | None:
    """What the peer does 0.2 s into a WAITALL recv of 10 bytes that has 5 (nothing: the timeout)."""
    return {"split": lambda: peer.sendall(b"67890"), "eof": lambda: peer.shutdown(socket.SHUT_WR)}.get(case)


def _waitall_native(case: str) -> bytes:
    guest, peer = socket.socketpair()
    with guest, peer:
        peer.sendall(b"12345")
        if case == "timeout":
            guest.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("qq", 0, 300_000))
        later = _what_comes_next(case, peer)
        timer = threading.Timer(0.2, later) if later else None
        if timer:
            timer.start()
        try:
            return guest.recv(10, socket.MSG_WAITALL)
        finally:
            if timer:
                timer.join()


def _waitall_wasmhost(case: str) -> bytes:
    with _sockets(Network()) as (sockets, buffer), _accepted(sockets, buffer) as (peer, fd):
        peer.sendall(b"12345")
        if case == "timeout":
            struct.pack_into("<qq", buffer, 500, 0, 300_000)
            sockets.sock_setsockopt(fd, 0, 11, 500, 16)  # SO_RCVTIMEO
        later = _what_comes_next(case, peer)
        assert sockets.ctx.loop is not None
        if later:
            sockets.ctx.loop.call_later(0.2, later)
        struct.pack_into("<IIII", buffer, 600, 1000, 4, 1004, 6)  # two iovecs, 10 bytes
        _drive(sockets, sockets.sock_recv(fd, 600, 2, 2, 700, 704))  # RIFLAG_WAITALL
        return bytes(buffer[1000 : 1000 + struct.unpack_from("<I", buffer, 700)[0]])


@pytest.mark.parametrize("case", ["split", "timeout", "eof"])
def test_recv_waitall_on_a_blocking_stream_waits_as_linux_does(case: str) -> None:
    """The rest of the data arrives later, SO_RCVTIMEO expires first, or the peer ends the
    stream: the same bytes as a native MSG_WAITALL recv, and no more, after the same wait
    (each case's event comes 0.2-0.3 s after the first five bytes)."""
    start = time.monotonic()
    native = _waitall_native(case)
    native_wait = time.monotonic() - start
    start = time.monotonic()
    got = _waitall_wasmhost(case)
    wasmhost_wait = time.monotonic() - start
    assert native == (b"1234567890" if case == "split" else b"12345")
    assert got == native
    assert native_wait > 0.15
    assert wasmhost_wait > 0.15


def test_getaddrinfo_fills_the_guest_records(abi: tuple[Sockets, bytearray]) -> None:
    sockets, buffer = abi
    sockets.network = Network(outbound=Rule.parse("localhost"))  # the policy lets the guest look it up
    buffer[0:10] = b"localhost\0"
    buffer[16:20] = b"80\0\0"
    struct.pack_into("<HBBB", buffer, 32, 0, 1, 2, 0)  # hints: INET4, STREAM
    records = 1000
    for i in range(3):  # a chain of 3 addrinfo -> sockaddr -> 26-byte data buffers
        entry = records + i * 100
        nxt = entry + 100 if i < 2 else 0
        struct.pack_into("<HBBBxxxIIIII", buffer, entry, 0, 0, 0, 0, 0, entry + 40, 0, 0, nxt)
        struct.pack_into("<BxxxII", buffer, entry + 40, 0, 0, entry + 60)
    struct.pack_into("<I", buffer, 64, records)
    _drive(sockets, sockets.sock_getaddrinfo(0, 10, 16, 3, 32, 64, 3, 68))
    count = struct.unpack_from("<I", buffer, 68)[0]
    assert count >= 1
    _flags, family, kind, _proto, addrlen = struct.unpack_from("<HBBBxxxI", buffer, records)
    assert (family, kind, addrlen) == (1, 2, 16)
    sa_family, data_len, data = struct.unpack_from("<BxxxII", buffer, records + 40)
    assert (sa_family, data_len) == (1, 14)
    assert buffer[data : data + 6] == struct.pack(">H", 80) + bytes([127, 0, 0, 1])


def test_getaddrinfo_errors(abi: tuple[Sockets, bytearray]) -> None:
    sockets, buffer = abi
    struct.pack_into("<HBBB", buffer, 32, 0, 9, 0, 0)
    buffer[0:2] = b"x\0"
    for args, errno in [((0, 0, 16, 0, 32, 64, 1, 68), Errno.AINONAME), ((0, 2, 16, 0, 32, 64, 1, 68), Errno.AIFAMILY)]:
        with pytest.raises(WasiError) as info:
            _drive(sockets, sockets.sock_getaddrinfo(*args))
        assert info.value.errno == errno
