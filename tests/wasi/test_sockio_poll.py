"""The C fast path of poll_oneoff (wasmhost/_native/sockio.c) against the Python host function
it fronts (tests/wasi/sockio_pair.py): the same errno, events, guest memory and socket record
for any subscriptions, and the cases C must leave to Python."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wasi.sockio_pair import PAGE, SOCKET_FD, Outcome, Side, compare, sides
from wasmhost.net.connections import Connections
from wasmhost.wasi.abi import SUB_CLOCK, SUB_FD, SUBSCRIPTION, Errno, Rights
from wasmhost.wasi.sockets import SOCKET_RIGHTS

READ, WRITE, CLOCK = 1, 2, 0
MS = 1_000_000
#: Every poll in these tests ends by 1 ms at the latest: a relative 1 ms monotonic clock.
GUARD = (CLOCK, 1, MS, 0)


def sub(userdata: int, kind: int, *body: int) -> bytes:
    """One subscription: an fd (``body``: fd), a clock (id, timeout, flags) or another type."""
    if kind == CLOCK:
        clock_id, timeout, flags = body
        packed = SUB_CLOCK.pack(clock_id, timeout, 0, flags)
    else:
        packed = SUB_FD.pack(*body[:1]) if body else b""
    return SUBSCRIPTION.pack(userdata, kind, packed)


def subs(*specs: tuple[int, ...]) -> bytes:
    return b"".join(sub(100 + i, *spec) for i, spec in enumerate(specs))


def poll(
    in_ptr: int, array: bytes, *, nsubs: int | None = None, out: int = 8192, nevents: int = 512,
    pending: bytes = b"", peer_shut: bool = False, times: int = 1, prepare: Callable[[Side], None] | None = None,
) -> Outcome:  # fmt: skip
    """One poll_oneoff, made with and without the C path, compared; returns the outcome."""
    count = len(array) // SUBSCRIPTION.size if nsubs is None else nsubs
    writes = [(in_ptr, array)] if in_ptr + len(array) <= PAGE else []
    return compare(
        True, prepare, op="poll", fd=None, args=[in_ptr, out, count, nevents], pending=pending,
        peer_shut=peer_shut, writes=writes, times=times,
    )  # fmt: skip


def events(memory: bytes, out: int, nevents: int) -> list[tuple[int, int, int, int, int]]:
    """(userdata, errno, type, nbytes, flags) of each event written."""
    count = struct.unpack_from("<I", memory, nevents)[0]
    return [struct.unpack_from("<QHB5xQH", memory, out + 32 * i) for i in range(count)]


# Most values make a call C can answer, the rest each kind of call it must leave to Python:
# another descriptor, a clock Python judges, a bad type, pointers at and past every boundary.
_FD_SUB = st.tuples(st.sampled_from([READ, WRITE]), st.sampled_from([SOCKET_FD] * 24 + [0, 1, 99]))
_CLOCK_ID = st.sampled_from([1] * 8 + [0, 2, 3, 7])
_CLOCK_SUB = st.tuples(st.just(CLOCK), _CLOCK_ID, st.sampled_from([0, MS]), st.sampled_from([0] * 10 + [1, 2]))
_SUB = st.one_of(*[_FD_SUB] * 16, *[_CLOCK_SUB] * 3, st.tuples(st.sampled_from([3, 255])))
_IN = st.sampled_from([64] * 30 + [4096, PAGE - 48 * 3, PAGE - 47, PAGE, 2**32 - 48])
_OUT = st.sampled_from([8192] * 30 + [64, 80, PAGE - 32, PAGE - 31, 2**32 - 1])
_NEVENTS = st.sampled_from([512] * 30 + [8192, PAGE - 4, PAGE - 3, 2**32 - 4])


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(_SUB, max_size=5),
    in_ptr=_IN,
    out=_OUT,
    nevents=_NEVENTS,
    nsubs=st.sampled_from([None] * 12 + [0, 257]),
    pending=st.sampled_from([b"", b"data"]),
    peer_shut=st.booleans(),
    times=st.sampled_from([1, 1, 2]),
)
def test_the_c_path_polls_as_python_does(
    specs: list[tuple[int, ...]], in_ptr: int, out: int, nevents: int, nsubs: int | None, pending: bytes,
    peer_shut: bool, times: int,
) -> None:  # fmt: skip
    # The guard clock bounds every wait; a second poll sees what the first reported as stale.
    poll(in_ptr, subs(*specs, GUARD), nsubs=nsubs, out=out, nevents=nevents, pending=pending,
         peer_shut=peer_shut, times=times)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(st.one_of(st.tuples(st.sampled_from([READ, WRITE]), st.just(SOCKET_FD)), _CLOCK_SUB), max_size=5),
    out=st.sampled_from([8192, 64, 64 + 48]),
    pending=st.sampled_from([b"", b"data"]),
    peer_shut=st.booleans(),
    times=st.sampled_from([1, 1, 2]),
)
def test_the_c_path_answers_as_python_does(
    specs: list[tuple[int, ...]], out: int, pending: bytes, peer_shut: bool, times: int
) -> None:
    """Calls C can answer, most of the time: the sample above mostly tests refusals."""
    poll(64, subs(*specs, GUARD), out=out, pending=pending, peer_shut=peer_shut, times=times)


@pytest.mark.parametrize(
    ("specs", "pending", "peer_shut", "expected"),
    [
        # A server: data to read on its connection, which is writable too.
        (((READ, SOCKET_FD), (WRITE, SOCKET_FD)), b"GET /", False, [(100, READ, 1, 0), (101, WRITE, 1, 0)]),
        # mio's style: both directions, nothing to read: only the write fires.
        (((READ, SOCKET_FD), (WRITE, SOCKET_FD), GUARD), b"", False, [(101, WRITE, 1, 0)]),
        # The peer closed: readable with the hang-up flag, nothing more to read.
        (((READ, SOCKET_FD), GUARD), b"", True, [(100, READ, 1, 0)]),
        # A clock with no time left fires with the readiness.
        (((CLOCK, 1, 0, 0), (READ, SOCKET_FD)), b"x", False, [(100, CLOCK, 0, 0), (101, READ, 1, 0)]),
    ],
)
def test_the_c_path_reports_what_python_reports(
    specs: tuple[tuple[int, ...], ...], pending: bytes, peer_shut: bool, expected: list[tuple[int, ...]]
) -> None:
    errno, memory, _record = poll(64, subs(*specs), pending=pending, peer_shut=peer_shut)
    assert errno == 0
    got = [(userdata, kind, nbytes, flags) for userdata, _errno, kind, nbytes, flags in events(memory, 8192, 512)]
    assert got == expected


def test_events_may_overwrite_the_subscriptions() -> None:
    """Every subscription is read before the first event is written, as Python does."""
    errno, memory, _record = poll(64, subs((WRITE, SOCKET_FD), (READ, SOCKET_FD)), out=64, pending=b"x")
    assert errno == 0 and [e[0] for e in events(memory, 64, 512)] == [100, 101]


def test_c_answers_fresh_readiness_and_python_holds_stale_readiness_back() -> None:
    with sides(True) as (fast, _slow):
        fast.write(64, subs((WRITE, SOCKET_FD), (CLOCK, 1, 50 * MS, 0)))
        assert fast.instance.call("poll", 64, 8192, 2, 512) == 0
        assert fast.c_calls("poll_oneoff") == 1 and fast.sock.seen(WRITE) == 0
        assert fast.instance.suspensions == 0
        # No I/O since: stale. C leaves it to Python, which holds it back 1 ms, then reports
        # it and doubles the next hold.
        assert fast.instance.call("poll", 64, 8192, 2, 512) == 0
        assert [e[0] for e in events(fast.memory(), 8192, 512)] == [100]
        assert fast.instance.suspensions == 1 and fast.c_calls("poll_oneoff") == 1
        assert fast.preview1._poll.idle_ns == 2 * MS
        # An I/O call makes the socket's readiness new again: C reports it at once, and the
        # guest is no longer idle.
        fast.write(16, struct.pack("<II", 1024, 1))
        assert fast.instance.call("send", fast.fd, 16, 1, 0, 512) == 0
        assert fast.instance.call("poll", 64, 8192, 2, 512) == 0
        assert [e[0] for e in events(fast.memory(), 8192, 512)] == [100]
        assert fast.instance.suspensions == 1 and fast.c_calls("poll_oneoff") == 2
        assert fast.preview1._poll.idle_ns == 0
        assert fast.instance.host_calls() == {"poll_oneoff": 3, "sock_send": 1}


def test_a_socket_c_may_not_poll_is_left_to_python() -> None:
    """Without the right to poll, or behind a concurrency limit (whose full listener Python
    swaps for a socket that is never ready), the socket is not C's to poll."""

    def no_poll_right(side: Side) -> None:
        side.sock.rights = SOCKET_RIGHTS & ~Rights.POLL_FD_READWRITE
        assert side.sock.io.pollable == 0

    def full(side: Side) -> None:
        side.sock.limited_by = Connections("guest", limit=0)  # full
        assert side.sock.io.pollable == 0

    errno, memory, _record = poll(64, subs((WRITE, SOCKET_FD)), prepare=no_poll_right)
    assert errno == 0 and [e[1] for e in events(memory, 8192, 512)] == [Errno.NOTCAPABLE]
    errno, memory, _record = poll(64, subs((READ, SOCKET_FD), GUARD), pending=b"x", prepare=full)
    assert errno == 0 and [e[0] for e in events(memory, 8192, 512)] == [101]  # the clock alone
    with sides(True) as (fast, _slow):
        full(fast)
        fast.sock.limited_by = None
        assert fast.sock.io.pollable == 1
