"""ABI rules without a guest: struct sizes, errno mapping, memory bounds, poll codecs."""

from __future__ import annotations

import errno
import select
from types import TracebackType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmhost.wasi import abi, poll
from wasmhost.wasi.abi import Errno, WasiError
from wasmhost.wasi.memory import GuestMemory


@pytest.mark.parametrize(
    ("layout", "size"),
    [(abi.FDSTAT, 24), (abi.FILESTAT, 64), (abi.PRESTAT, 8), (abi.DIRENT, 24), (abi.SUBSCRIPTION, 48), (abi.EVENT, 32)],
)
def test_struct_sizes_match_preview1(layout: object, size: int) -> None:
    assert layout.size == size  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("os_errno", "wasi"),
    [(errno.ENOENT, Errno.NOENT), (errno.EAGAIN, Errno.AGAIN), (errno.EADDRINUSE, Errno.ADDRINUSE),
     (errno.E2BIG, Errno.TOOBIG), (errno.ENOTEMPTY, Errno.NOTEMPTY), (errno.EPIPE, Errno.PIPE)],
)  # fmt: skip
def test_os_errors_map_by_name(os_errno: int, wasi: Errno) -> None:
    assert abi.from_os(OSError(os_errno, "x")).errno == wasi


def test_unknown_os_error_is_io() -> None:
    assert abi.from_os(OSError(9999, "x")).errno == Errno.IO


@given(ptr=st.integers(0, 2**32 - 1), length=st.integers(0, 2**32 - 1))
def test_memory_access_is_bounds_checked(ptr: int, length: int) -> None:
    mem = GuestMemory.of_buffer(bytearray(4096))
    if ptr + length <= 4096:
        assert len(mem.read(ptr, length)) == length
    else:
        with pytest.raises(WasiError) as info:
            mem.read(ptr, length)
        assert info.value.errno == Errno.FAULT


def test_iovec_pointing_outside_memory_faults() -> None:
    buf = bytearray(64)
    abi.IOVEC.pack_into(buf, 0, 60, 8)  # 60..68 crosses the end
    with pytest.raises(WasiError) as info:
        GuestMemory.of_buffer(buf).iovecs(0, 1)
    assert info.value.errno == Errno.FAULT


def test_too_many_iovecs() -> None:
    with pytest.raises(WasiError) as info:
        GuestMemory.of_buffer(bytearray(64)).iovecs(0, abi.MAX_IOVECS + 1)
    assert info.value.errno == Errno.INVAL


def _clock(userdata: int, timeout: int, flags: int = 0, clock: int = 1) -> bytes:
    return abi.SUBSCRIPTION.pack(userdata, 0, abi.SUB_CLOCK.pack(clock, timeout, 0, flags).ljust(32, b"\0"))


def test_clock_subscriptions_become_monotonic_deadlines() -> None:
    data = _clock(1, 50) + _clock(2, 1_000, abi.SUBSCRIPTION_CLOCK_ABSTIME, clock=0) + _clock(3, 5, clock=9)
    rel, real, bad = poll.decode(data, now_ns=100, realtime_ns=900)
    assert rel.deadline_ns == 150
    assert real.deadline_ns == 200  # 100 ns of realtime left, counted from monotonic now
    assert bad.error == Errno.INVAL


def test_fd_events_never_carry_errors_and_flag_only_full_hangup() -> None:
    sub = poll.Subscription(7, abi.EventType.FD_READ, fd=3)
    assert poll.fd_event(sub, 0) is None
    hup = poll.fd_event(sub, select.POLLHUP)
    # (userdata, error, type, nbytes, flags): a hang-up alone is readable with nothing to read
    assert hup is not None and abi.EVENT.unpack(hup) == (7, 0, 1, 0, abi.EVENT_FD_READWRITE_HANGUP)
    err = poll.fd_event(sub, select.POLLERR)
    assert err is not None and abi.EVENT.unpack(err) == (7, 0, 1, 0, 0)
    ready = poll.fd_event(sub, select.POLLIN | select.POLLHUP)
    assert ready is not None and abi.EVENT.unpack(ready) == (7, 0, 1, 1, abi.EVENT_FD_READWRITE_HANGUP)
    assert poll.fd_event(poll.Subscription(7, abi.EventType.FD_WRITE, fd=3), select.POLLIN) is None


def test_event_encoding() -> None:
    raw = poll.event(poll.Subscription(2**64 - 1, abi.EventType.FD_WRITE, fd=3), Errno.BADF, 10)
    assert raw == abi.EVENT.pack(2**64 - 1, 8, 2, 10, 0) and len(raw) == 32


def test_each_fault_is_a_fresh_exception() -> None:
    """One shared exception instance would keep every traceback it was raised with."""
    mem = GuestMemory.of_buffer(bytearray(64))
    faults = []
    for _ in range(100):
        try:
            mem.read(60, 8)
        except WasiError as exc:
            faults.append(exc)
    assert len({id(fault) for fault in faults}) == 100
    assert _depth(faults[-1].__traceback__) == _depth(faults[0].__traceback__)


def _depth(tb: TracebackType | None) -> int:
    return 0 if tb is None else 1 + _depth(tb.tb_next)


def test_empty_access_as_the_first_one_is_fine() -> None:
    """A zero-length write before any other access (``random_get(0, 0)``) used to hit the
    read-only placeholder view and raise ``TypeError``."""
    mem = GuestMemory.of_buffer(bytearray(64))
    mem.write(0, b"")
    assert mem.read(64, 0) == b""


@pytest.mark.parametrize(("raw", "expected"), [(b"a\0b", Errno.INVAL), (b"\xff", Errno.ILSEQ)])
def test_guest_strings_are_utf8_without_nul(raw: bytes, expected: Errno) -> None:
    buf = bytearray(64)
    buf[: len(raw)] = raw
    with pytest.raises(WasiError) as info:
        GuestMemory.of_buffer(buf).string(0, len(raw))
    assert info.value.errno == expected
