"""The C fast paths of sock_accept and fd_close (wasmhost/_native/sockio.c) against the Python
host functions they front (tests/wasi/sockio_pair.py): the same errno, memory, listener record,
accepted connections and counts; the descriptor Python makes of a connection C accepted; and
the cases C must leave to Python."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.wasi.sockio_pair import PAGE, SOCKET_FD, Outcome, Side, compare, sides
from wasmhost._native.sockio import SPARES
from wasmhost.net.connections import Connections
from wasmhost.wasi.abi import FDFLAG_NONBLOCK, Errno
from wasmhost.wasi.sockets import SOCKET_RIGHTS, Socket

OUT = 512


def accept(
    op: str = "accept", args: tuple[int, ...] = (OUT,), *, fd: int | None = None, nonblock: bool = True,
    pending: bytes = b"", prepare: Callable[[Side], None] | None = None, times: int = 1,
) -> Outcome:  # fmt: skip
    """One accept on a listener, made with and without the C path, compared."""
    return compare(
        nonblock, prepare, listener=True, op=op, fd=fd, args=list(args), pending=pending, peer_shut=False,
        writes=[], times=times,
    )  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(
    op=st.sampled_from(["accept", "accept2"]),
    fd=st.sampled_from([None] * 6 + [1, 99]),
    nonblock=st.booleans(),
    connection=st.booleans(),
    flags=st.sampled_from([0, 0, 4, 0x1F, 0x20]),
    out=st.sampled_from([OUT] * 6 + [PAGE - 4, PAGE - 3, 2**32 - 1]),
    times=st.sampled_from([1, 1, 2]),
    reported=st.booleans(),
)
def test_the_c_path_accepts_as_python_does(
    op: str, fd: int | None, nonblock: bool, connection: bool, flags: int, out: int, times: int, reported: bool
) -> None:
    # A blocking accept with nothing to accept would wait for ever, on both sides.
    assume(nonblock or (connection and times == 1) or fd is not None)
    args = (out,) if op == "accept" else (flags, out)

    def prepare(side: Side) -> None:
        if reported:  # as poll_oneoff does when it reports the listener readable: accept(2) at once
            side.sock.saw(1)

    accept(op, args, fd=fd, nonblock=nonblock, pending=b"GET /" if connection else b"", times=times, prepare=prepare)


def test_c_accepts_and_python_makes_the_descriptor_when_it_needs_one() -> None:
    with sides(True, listener=True) as (fast, _slow):
        assert fast.instance.call("accept", SOCKET_FD, OUT) == Errno.AGAIN
        assert fast.instance.call("accept2", SOCKET_FD, 0, OUT) == Errno.AGAIN
        assert fast.c_calls("sock_accept_v1") == fast.c_calls("sock_accept_v2") == 1
        assert fast.sock.io_seq == 2
        fast.sock.guest_port = 8080
        fast.peer.connect(fast.guest.getsockname())
        assert fast.instance.call("accept2", SOCKET_FD, FDFLAG_NONBLOCK, OUT) == 0
        conn = struct.unpack_from("<I", fast.memory(), OUT)[0]
        assert conn == SOCKET_FD + 1 and fast.c_calls("sock_accept_v2") == 2
        fds = fast.instance._ctx.fds
        assert fds.native.bare_fds() == [conn]
        assert (fast.instance.connections.accepted, fast.instance.connections.open) == (1, 1)
        assert fast.instance.call("accept", SOCKET_FD, OUT) == Errno.AGAIN
        assert fast.instance.host_calls() == {"sock_accept_v1": 2, "sock_accept_v2": 2}

        desc = fds.get(conn)  # a Python function needs it: made now, around C's record
        assert isinstance(desc, Socket) and fds.native.bare_fds() == [] and fds.get(conn) is desc
        assert desc.sock.getpeername() == fast.peer.getsockname() and desc.guest_port == 8080
        assert desc.flags == FDFLAG_NONBLOCK and desc.io_seq == 0 and desc.rights == SOCKET_RIGHTS
        fast.peer.sendall(b"ping")
        assert desc.readv([memoryview(bytearray(8))]) == 4
        assert fast.instance.call("close", conn) == 0 and fast.c_calls("fd_close") == 0  # Python's now
        assert fast.instance.connections.open == 0 and fast.peer.recv(8) == b""


def test_c_closes_a_connection_python_never_needed() -> None:
    with sides(True, listener=True) as (fast, _slow):
        native = fast.instance._ctx.fds.native
        spares = native.struct.nspare
        for _ in range(3):
            fast.peer.connect(fast.guest.getsockname())
            assert fast.instance.call("accept", SOCKET_FD, OUT) == 0
            assert native.struct.nspare == spares - 1
            assert fast.instance.call("close", SOCKET_FD + 1) == 0
            assert native.struct.nspare == spares and native.bare_fds() == []
            assert fast.peer.recv(8) == b""
            fast.peer.close()
            fast.peer = socket.socket()
        assert fast.c_calls("sock_accept_v1") == fast.c_calls("fd_close") == 3
        assert (fast.instance.connections.accepted, fast.instance.connections.open) == (3, 0)
        assert fast.instance.call("close", SOCKET_FD + 1) == Errno.BADF  # Python says what is wrong


def test_c_accepts_into_numbers_python_makes_room_for() -> None:
    """C takes numbers only below the map's size and records only from its spares: past
    either, one accept is Python's, which grows the map and refills the spares."""
    with sides(True, listener=True) as (fast, _slow):
        clients = []
        for expected in range(SOCKET_FD + 1, SOCKET_FD + 41):
            clients.append(socket.create_connection(fast.guest.getsockname()))
            assert fast.instance.call("accept", SOCKET_FD, OUT) == 0
            assert struct.unpack_from("<I", fast.memory(), OUT)[0] == expected  # the lowest free
        # Numbers 4-15 in C (the map has 16), 16 in Python (32 now), 17-31 in C, 32 in Python.
        assert fast.c_calls("sock_accept_v1") == 38
        assert (fast.instance.connections.accepted, fast.instance.connections.open) == (40, 40)
        for fd in reversed(range(SOCKET_FD + 1, SOCKET_FD + 41)):
            assert fast.instance.call("close", fd) == 0
        assert fast.c_calls("fd_close") == 38 and fast.instance.connections.open == 0
        assert all(client.recv(8) == b"" for client in clients)
        native = fast.instance._ctx.fds.native
        assert native.struct.nspare == SPARES + 27  # the 27 accepted before the last refill came back
        native.accepting(fast.instance.connections.counts)  # as Python's next accept does
        assert native.struct.nspare == len(native._records) == SPARES
        clients.append(socket.create_connection(fast.guest.getsockname()))
        assert fast.instance.call("accept", SOCKET_FD, OUT) == 0
        assert struct.unpack_from("<I", fast.memory(), OUT)[0] == SOCKET_FD + 1
        for client in clients:
            client.close()


def test_python_makes_the_accept_a_callback_waits_for() -> None:
    with sides(True, listener=True) as (fast, _slow):
        conns, reached, clients = fast.instance.connections, [], []
        conns.when_accepted(2, lambda: reached.append(conns.accepted))
        for c_calls in (1, 1, 2):  # the second accept is Python's
            clients.append(socket.create_connection(fast.guest.getsockname()))
            assert fast.instance.call("accept", SOCKET_FD, OUT) == 0
            assert fast.c_calls("sock_accept_v1") == c_calls
        assert reached == [2] and conns.accepted == 3
        for client in clients:
            client.close()


@pytest.mark.parametrize("fd", [SOCKET_FD + 1, SOCKET_FD, 0, 1, 1000])
@pytest.mark.parametrize("adopted", [False, True])
def test_the_c_path_closes_as_python_does(fd: int, adopted: bool) -> None:
    def accepted(side: Side) -> None:
        side.peer.connect(side.guest.getsockname())
        assert side.instance.call("accept", SOCKET_FD, OUT) == 0
        if adopted:
            side.instance._ctx.fds.get(SOCKET_FD + 1)

    errno, _memory, _state = compare(
        True, accepted, listener=True, op="close", fd=fd, args=[], pending=b"", peer_shut=False, writes=[]
    )
    assert errno == (Errno.BADF if fd == 1000 else 0)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("blocking", None),  # waits in Python, until a connection comes
        ("blocking, reported", None),
        ("not listening", Errno.AGAIN),  # not by the guest's sock_listen: accept(2) answers
        ("limited", Errno.AGAIN),  # a full listener: Python says AGAIN without looking
        ("no spares", 0),  # a connection, and no record for C to fill
        ("descriptor limit", Errno.MFILE),  # a connection, and no number below the limit
        ("counted", 0),  # a connection, the one a callback waits for (--max-requests)
    ],
)
def test_what_c_leaves_to_python(case: str, expected: int | None) -> None:
    def prepare(side: Side) -> None:
        if case == "not listening":
            side.sock.listening = False
        elif case == "limited":
            side.sock.limited_by = Connections("guest", limit=0)  # full
        elif case == "no spares":
            side.instance._ctx.fds.native.struct.nspare = 0
        elif case == "descriptor limit":
            side.instance._ctx.fds.native.struct.limit = SOCKET_FD + 1
        elif case == "counted":
            side.instance.connections.when_accepted(1, lambda: None)

    if case.startswith("blocking"):
        with sides(False, listener=True) as (fast, _slow):
            if case == "blocking, reported":
                fast.sock.saw(1)  # the connection poll reported is gone: accept(2) says EAGAIN

            async def late_connection() -> int:
                client = fast.peer
                asyncio.get_running_loop().call_later(0.05, client.connect, fast.guest.getsockname())
                errno: int = await fast.instance.call_async("accept", SOCKET_FD, OUT)
                return errno

            assert asyncio.run(late_connection()) == 0
            assert fast.c_calls("sock_accept_v1") == 0 and fast.instance.suspensions >= 1
        return
    pending = b"x" if expected != Errno.AGAIN else b""  # the last three: a connection to accept
    errno, _memory, _record = accept(prepare=prepare, pending=pending)
    assert errno == expected
    with sides(True, listener=True) as (fast, _slow):
        prepare(fast)
        if pending:
            fast.peer.connect(fast.guest.getsockname())
        fast.instance.call("accept", SOCKET_FD, OUT)
        assert fast.c_calls("sock_accept_v1") == 0
        if pending:  # with nothing to accept, C still says AGAIN
            prepare(fast)
            assert fast.instance.call("accept", SOCKET_FD, OUT) == Errno.AGAIN
            assert fast.c_calls("sock_accept_v1") == 1
