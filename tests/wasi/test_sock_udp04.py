"""UDP for guests of wasmedge_wasi_socket 0.4.x (issue 7, item 4): the 7-param sock_recv_from
writes the sender as that crate reads it back, so recv_from + send_to answers the sender."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator

import pytest

from tests.conftest import ServeFactory
from wasmhost.net.policy import Network
from wasmhost.wasi.context import WasiContext
from wasmhost.wasi.fdtable import FdTable
from wasmhost.wasi.memory import GuestMemory
from wasmhost.wasi.sockets import Socket, Sockets


def test_udp_reverse_round_trips_datagrams_from_two_clients(serve: ServeFactory) -> None:
    served = serve("udp-reverse-04")
    server = ("127.0.0.1", served.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        for sock in (a, b):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
        for i in range(3):
            a.sendto(f"hello {i}".encode(), server)
            b.sendto(f"from b {i}".encode(), server)
            assert a.recvfrom(100) == (f"hello {i}".encode()[::-1], server)
            assert b.recvfrom(100) == (f"from b {i}".encode()[::-1], server)
    assert served.proc.poll() is None, "".join(served.log)


@pytest.fixture
def udp() -> Iterator[tuple[Sockets, bytearray, int, socket.socket]]:
    """A guest UDP socket on 127.0.0.1 (fd in the table) and a host peer that sent it b'ping'."""
    ctx = WasiContext([], [], FdTable(), lambda: None)
    ctx.loop = asyncio.new_event_loop()
    buffer = bytearray(4096)
    ctx.memory = GuestMemory.of_buffer(buffer)
    guest = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    guest.bind(("127.0.0.1", 0))
    fd = ctx.fds.add(Socket(guest))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.sendto(b"ping", guest.getsockname())
        yield Sockets(ctx, Network(), "test"), buffer, fd, peer
    ctx.close()
    ctx.loop.close()


@pytest.mark.parametrize("length", [16, 4])
def test_recv_from_7_params_sender_layouts(udp: tuple[Sockets, bytearray, int, socket.socket], length: int) -> None:
    sockets, buffer, fd, peer = udp
    struct.pack_into("<II", buffer, 0, 100, 4)  # iovec -> 100, 4 bytes
    struct.pack_into("<II", buffer, 16, 200, length)  # WasiAddress -> 200
    buffer[200:216] = b"\xee" * 16
    assert sockets.ctx.loop is not None
    sockets.ctx.loop.run_until_complete(sockets.sock_recv_from_v1(fd, 0, 1, 16, 0, 300, 304))
    assert buffer[100:104] == b"ping"
    peer_ip, peer_port = peer.getsockname()
    if length == 16:  # crate 0.4.x: {Linux AF_INET u16, port u16 little-endian, IPv4, zeros}
        assert bytes(buffer[200:216]) == struct.pack("<HH", 2, peer_port) + socket.inet_aton(peer_ip) + bytes(8)
    else:  # V1: the raw address only
        assert bytes(buffer[200:216]) == socket.inet_aton(peer_ip) + b"\xee" * 12
