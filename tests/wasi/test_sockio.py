"""The C fast path of sock_recv and sock_send (wasmhost/_native/sockio.c) against the Python
host functions it fronts (tests/wasi/sockio_pair.py): the same errno, guest memory, bytes
moved and socket record, for calls at and past every boundary, and the paths between them."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.wasi.sockio_pair import PAGE, compare, sides
from wasmhost.wasi.abi import Errno

# Half the values name memory a call can use, half sit at and around every boundary: the end
# of memory, past it, past 4 GiB. Most calls then get past the checks and move bytes.
_PTR = st.sampled_from([0, 16, 1024, 4000, PAGE - 16, PAGE - 8, PAGE - 4, PAGE - 2, PAGE - 1, PAGE, 2**32 - 1])
_LEN = st.sampled_from([0, 1, 7, 64, 100, 4096, PAGE, 2**31, 2**32 - 1])
_IOVEC = st.one_of(
    st.tuples(st.sampled_from([1024, 4000, 30000]), st.sampled_from([1, 7, 64, 4096])), st.tuples(_PTR, _LEN)
)
_OUT = st.one_of(st.sampled_from([512, 516, 520]), _PTR)


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(["recv", "send"]),
    fd=st.sampled_from(["socket"] * 5 + [1, 99, 2**32 - 1]),
    nonblock=st.booleans(),
    pending=st.binary(max_size=300),
    peer_shut=st.booleans(),
    iovs=st.sampled_from([16, 16, 2000, PAGE - 8, PAGE - 4, 2**32 - 8]),
    iovecs=st.lists(_IOVEC, max_size=4),
    count=st.sampled_from([None] * 4 + [0, 65, 1024, 1025]),
    flags=st.sampled_from([0] * 5 + [1, 2, 3, 4]),
    out_len=_OUT,
    out_flags=_OUT,
)
def test_the_c_path_does_what_python_does(
    op: str, fd: Any, nonblock: bool, pending: bytes, peer_shut: bool, iovs: int, iovecs: list[tuple[int, int]],
    count: int | None, flags: int, out_len: int, out_flags: int,
) -> None:  # fmt: skip
    # A blocking receive that could wait stays out: it would wait in Python on both sides
    # (tested below). A send on a fresh pair never waits: the buffer takes part of it at least.
    assume(nonblock or peer_shut or op == "send")
    array = b"".join(struct.pack("<II", p, n) for p, n in iovecs)
    writes = [(4000, bytes(range(256)) * 8)]  # what a send may send
    if iovs + len(array) <= PAGE:
        writes.append((iovs, array))
    args = [iovs, len(iovecs) if count is None else count, flags, out_len, out_flags]
    compare(
        nonblock, op=op, fd=None if fd == "socket" else fd, args=args if op == "recv" else args[:4],
        pending=pending, peer_shut=peer_shut, writes=writes,
    )  # fmt: skip


_IOV1 = [(16, struct.pack("<II", 1024, 64))]
_IOV2 = [(16, struct.pack("<IIII", 1024, 7, 4000, 100))]


@pytest.mark.parametrize(
    ("op", "nonblock", "pending", "peer_shut", "writes"),
    [
        ("recv", True, b"hello", False, _IOV1),  # data
        ("recv", True, bytes(range(200)), False, _IOV2),  # data across two buffers, some left
        ("recv", True, b"", False, _IOV1),  # AGAIN
        ("recv", False, b"", True, _IOV1),  # end of stream on a blocking socket
        ("recv", False, b"last", True, _IOV2),  # data, then the end, on a blocking socket
        ("send", True, b"", False, [*_IOV1, (1024, b"x" * 64)]),
        ("send", False, b"", False, [*_IOV2, (1024, b"y" * 7), (4000, b"z" * 100)]),
    ],
)
def test_the_c_path_moves_what_python_moves(
    op: str, nonblock: bool, pending: bytes, peer_shut: bool, writes: list[tuple[int, bytes]]
) -> None:
    """The calls a server makes, each compared: the sample above mostly tests refusals."""
    count = len(writes[0][1]) // 8
    args = [16, count, 0, 512, 516][: 5 if op == "recv" else 4]
    errno, _memory, ((_open, seq, received, sent, *_record), *_rest) = compare(
        nonblock, op=op, fd=None, args=args, pending=pending, peer_shut=peer_shut, writes=writes
    )
    assert errno in (0, Errno.AGAIN) and seq == 1
    assert (received or sent or errno or peer_shut) and not (received and sent)


def test_the_c_path_makes_the_calls_and_counts_them() -> None:
    with sides(True) as (fast, _slow):
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


def test_a_blocking_recv_with_nothing_to_read_waits_in_python() -> None:
    with sides(False) as (fast, _slow):
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


def test_a_closed_socket_is_left_to_python() -> None:
    """After fd_close the number is free: C must not reach the old host descriptor."""
    with sides(True) as (fast, _slow):
        fast.write(16, struct.pack("<II", 1024, 64))
        fast.instance._ctx.fds.close(fast.fd)
        assert fast.instance.call("recv", fast.fd, 16, 1, 0, 512, 516) == Errno.BADF
        assert fast.instance.call("send", fast.fd, 16, 1, 0, 512) == Errno.BADF
        assert fast.instance.host_calls() == {"sock_recv": 1, "sock_send": 1}
