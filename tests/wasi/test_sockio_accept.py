"""The C fast path of sock_accept (wasmhost/_native/sockio.c), which answers AGAIN for a
non-blocking listener with no connection waiting, against the Python host function it fronts
(tests/wasi/sockio_pair.py): the same errno, memory and listener record, and the cases C must
leave to Python."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.wasi.sockio_pair import PAGE, SOCKET_FD, Outcome, Side, compare, sides
from wasmhost.net.connections import Connections
from wasmhost.wasi.abi import Errno

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
)
def test_the_c_path_accepts_as_python_does(
    op: str, fd: int | None, nonblock: bool, connection: bool, flags: int, out: int, times: int
) -> None:
    # A blocking accept with nothing to accept would wait for ever, on both sides.
    assume(nonblock or (connection and times == 1) or fd is not None)
    args = (out,) if op == "accept" else (flags, out)
    accept(op, args, fd=fd, nonblock=nonblock, pending=b"GET /" if connection else b"", times=times)


def test_c_answers_again_and_python_accepts() -> None:
    with sides(True, listener=True) as (fast, _slow):
        assert fast.instance.call("accept", SOCKET_FD, OUT) == Errno.AGAIN
        assert fast.instance.call("accept2", SOCKET_FD, 0, OUT) == Errno.AGAIN
        assert fast.c_calls("sock_accept_v1") == fast.c_calls("sock_accept_v2") == 1
        assert fast.sock.io_seq == 2
        fast.peer.connect(fast.guest.getsockname())
        assert fast.instance.call("accept", SOCKET_FD, OUT) == 0  # Python's: a new descriptor
        assert struct.unpack_from("<I", fast.memory(), OUT)[0] == SOCKET_FD + 1
        assert fast.instance.call("accept", SOCKET_FD, OUT) == Errno.AGAIN
        assert fast.c_calls("sock_accept_v1") == 2
        assert fast.instance.host_calls() == {"sock_accept_v1": 3, "sock_accept_v2": 1}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("blocking", None),  # waits in Python, until a connection comes
        ("not listening", Errno.AGAIN),  # not by the guest's sock_listen: accept(2) answers
        ("limited", Errno.AGAIN),  # a full listener: Python says AGAIN without looking
        ("reported", Errno.AGAIN),  # poll just said readable: Python calls accept(2) at once
    ],
)
def test_what_c_leaves_to_python(case: str, expected: int | None) -> None:
    def prepare(side: Side) -> None:
        if case == "not listening":
            side.sock.listening = False
        elif case == "limited":
            side.sock.limited_by = Connections("guest", limit=1, open=1)
        elif case == "reported":
            side.sock.saw(1)  # as poll_oneoff does when it reports the listener readable

    if case == "blocking":
        with sides(False, listener=True) as (fast, _slow):

            async def late_connection() -> int:
                client = fast.peer
                asyncio.get_running_loop().call_later(0.05, client.connect, fast.guest.getsockname())
                errno: int = await fast.instance.call_async("accept", SOCKET_FD, OUT)
                return errno

            assert asyncio.run(late_connection()) == 0
            assert fast.c_calls("sock_accept_v1") == 0 and fast.instance.suspensions >= 1
        return
    errno, _memory, _record = accept(prepare=prepare)
    assert errno == expected
    with sides(True, listener=True) as (fast, _slow):
        prepare(fast)
        fast.instance.call("accept", SOCKET_FD, OUT)
        assert fast.c_calls("sock_accept_v1") == 0
