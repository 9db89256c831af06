"""The C fast paths of fd_fdstat_get, fd_fdstat_set_flags and sock_shutdown on stream sockets
(wasmhost/_native/sockio.c) against the Python host functions they front
(tests/wasi/sockio_pair.py): the same errno, memory, socket record and stream state."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wasi.sockio_pair import PAGE, SOCKET_FD, Side, compare, sides
from wasmhost.wasi.abi import FDFLAG_APPEND, FDFLAG_NONBLOCK, FDSTAT, Errno, Filetype, Rights
from wasmhost.wasi.sockets import SOCKET_RIGHTS

_NO_SET_FLAGS = SOCKET_RIGHTS & ~Rights.FD_FDSTAT_SET_FLAGS


def _reduce_rights(rights: int) -> Callable[[Side], None]:
    def prepare(side: Side) -> None:
        side.sock.rights = rights
        side.sock.inheriting = rights & ~Rights.FD_READ

    return prepare


@settings(max_examples=200, deadline=None)
@given(
    op=st.sampled_from(["fdstat", "set_flags", "shutdown"]),
    fd=st.sampled_from([None] * 6 + [1, 99, 2**32 - 1]),
    nonblock=st.booleans(),
    arg=st.sampled_from([0, 1, 2, 3, 4, 5, 16, 0x1F, 0x20, 512, 1024, PAGE - 24, PAGE - 23, 2**32 - 1]),
    rights=st.sampled_from([SOCKET_RIGHTS] * 4 + [_NO_SET_FLAGS]),
    pending=st.sampled_from([b"", b"data"]),
    peer_shut=st.booleans(),
    times=st.sampled_from([1, 1, 2]),
)
def test_the_c_path_does_what_python_does(
    op: str, fd: int | None, nonblock: bool, arg: int, rights: int, pending: bytes, peer_shut: bool, times: int
) -> None:
    compare(
        nonblock, _reduce_rights(rights), op=op, fd=fd, args=[arg], pending=pending, peer_shut=peer_shut,
        writes=[(1024, b"\xff" * 24)], times=times,
    )  # fmt: skip


def test_a_server_s_calls_run_in_c() -> None:
    """What a server does with each accepted connection: read the flags, add NONBLOCK, shut
    the stream down when done."""
    with sides(False) as (fast, _slow):
        assert fast.instance.call("fdstat", SOCKET_FD, 1024) == 0
        assert FDSTAT.unpack_from(fast.memory(), 1024) == (Filetype.SOCKET_STREAM, 0, SOCKET_RIGHTS, SOCKET_RIGHTS)
        assert fast.instance.call("set_flags", SOCKET_FD, FDFLAG_NONBLOCK | FDFLAG_APPEND) == 0
        assert fast.sock.flags == FDFLAG_NONBLOCK | FDFLAG_APPEND  # Python sees what C set
        assert fast.instance.call("fdstat", SOCKET_FD, 1024) == 0
        assert FDSTAT.unpack_from(fast.memory(), 1024)[1] == FDFLAG_NONBLOCK | FDFLAG_APPEND
        assert fast.instance.call("shutdown", SOCKET_FD, 2) == 0
        assert fast.peer.recv(16) == b""  # the end of the stream
        assert fast.instance.call("shutdown", SOCKET_FD, 3) == 0
        assert fast.sock.io_seq == 2
        assert {name: fast.c_calls(name) for name in ("fd_fdstat_get", "fd_fdstat_set_flags", "sock_shutdown")} == {
            "fd_fdstat_get": 2,
            "fd_fdstat_set_flags": 1,
            "sock_shutdown": 2,
        }


@pytest.mark.parametrize(
    ("op", "arg", "prepare", "expected"),
    [
        ("fdstat", PAGE - 23, None, Errno.FAULT),
        ("set_flags", 0x20, None, Errno.INVAL),
        ("set_flags", FDFLAG_NONBLOCK, _reduce_rights(_NO_SET_FLAGS), Errno.NOTCAPABLE),
        ("shutdown", 4, None, Errno.INVAL),
    ],
)
def test_errors_are_python_s(op: str, arg: int, prepare: Callable[[Side], None] | None, expected: int) -> None:
    errno, _memory, _record = compare(
        True, prepare, op=op, fd=None, args=[arg], pending=b"", peer_shut=False, writes=[]
    )
    assert errno == expected
    with sides(True) as (fast, _slow):
        if prepare is not None:
            prepare(fast)
        assert fast.instance.call(op, SOCKET_FD, arg) == expected
        assert fast.c_calls() == 0


def test_a_failed_shutdown_reports_linux_s_errno() -> None:
    """shutdown(2) of a TCP socket that never connected: NOTCONN, in C as in Python."""

    def unconnected(side: Side) -> None:
        side.sock.host_socket(socket.socket())  # the pair's end stays Side.guest, closed with it

    errno, _memory, _record = compare(
        True, unconnected, op="shutdown", fd=None, args=[2], pending=b"", peer_shut=False, writes=[]
    )
    assert errno == Errno.NOTCONN
