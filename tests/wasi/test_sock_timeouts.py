"""SO_RCVTIMEO / SO_SNDTIMEO bound every blocking socket call as on Linux (issue 7, item 3),
fd_read and fd_write on a socket included (read(2) and write(2) honour them too).

Each case runs the sock-timeouts guest under ``wasmhost run`` and the same operation natively
in Python on a blocking socket with the same option, and compares the errno and the time
the timed-out call took. A connect that never answers: a listener with a full backlog on
127.0.0.1 (Linux drops SYNs to it, so the client keeps retrying).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from wasmhost.wasi.abi import from_os

ONE_SECOND = struct.pack("qq", 1, 0)
CHUNK = b"x" * (1 << 20)
Address = tuple[str, int]


@pytest.fixture
def full_backlog() -> Iterator[Address]:
    """A listener whose accept queue is full: a new connect to it hangs in SYN-SENT."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(16):
            probe = stack.enter_context(socket.socket())
            probe.setblocking(False)
            probe.connect_ex(address)
            if not select.select([], [probe], [], 0.3)[1]:
                break  # this one hangs: the queue is full
        else:
            pytest.fail("could not fill the accept queue of a listen(0) socket")
        yield address


@pytest.fixture
def silent_peer() -> Iterator[Address]:
    """A listener that never accepts: connections complete, nothing is read or sent."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()


def _timed(call: Callable[[], object]) -> tuple[int, float]:
    start = time.monotonic()
    try:
        call()
    except OSError as exc:
        return exc.errno or 0, time.monotonic() - start
    return 0, time.monotonic() - start


def _until_error(call: Callable[[], object]) -> tuple[int, float]:
    while True:
        errno, elapsed = _timed(call)
        if errno:
            return errno, elapsed


def _native(op: str, target: Address | None) -> tuple[int, float]:
    """The operation on a blocking host socket: (errno, seconds the failing call took)."""
    kind = socket.SOCK_DGRAM if op == "recv_from" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        option = socket.SO_SNDTIMEO if op in ("connect", "send", "send_to", "write") else socket.SO_RCVTIMEO
        if op in ("recv", "send", "send_to", "read", "write"):
            assert target is not None
            sock.connect(target)
        elif op in ("accept", "recv_from"):
            sock.bind(("127.0.0.1", 0))
            if op == "accept":
                sock.listen(16)
        sock.setsockopt(socket.SOL_SOCKET, option, ONE_SECOND)
        if op == "connect":
            assert target is not None
            return _timed(lambda: sock.connect(target))  # a blocking connect: no Python timeout
        if op == "send":
            return _until_error(lambda: sock.send(CHUNK))
        if op == "write":
            return _until_error(lambda: os.write(sock.fileno(), CHUNK))
        if op == "send_to":
            return _until_error(lambda: sock.sendto(CHUNK, target))  # type: ignore[arg-type]
        call = {"accept": sock.accept, "recv": lambda: sock.recv(64), "recv_from": lambda: sock.recvfrom(64),
                "read": lambda: os.read(sock.fileno(), 64)}[op]  # fmt: skip
        return _timed(call)


def _guest(path: Path, op: str, target: Address | None) -> tuple[int, float]:
    args = [op, *map(str, target)] if target else [op]
    done = run_cli("run", "--allow-outbound", "127.0.0.1", path, "--", *args, timeout=30)
    assert done.returncode == 0, done.stderr
    found = re.fullmatch(rf"{op} errno=(\d+) elapsed_ms=(\d+)\n", done.stdout)
    assert found, done.stdout
    return int(found.group(1)), int(found.group(2)) / 1000


@pytest.mark.parametrize("op", ["connect", "accept", "recv", "recv_from", "send", "send_to", "read", "write"])
def test_timeouts_match_linux(
    op: str, guest: Callable[[str], Path], full_backlog: Address, silent_peer: Address
) -> None:
    target = (
        full_backlog if op == "connect" else silent_peer if op in ("recv", "send", "send_to", "read", "write") else None
    )
    native_errno, native_elapsed = _native(op, target)
    wasi_errno, wasi_elapsed = _guest(guest("sock-timeouts"), op, target)
    print(f"{op}: native {native_errno} in {native_elapsed:.3f} s, wasmhost {wasi_errno} in {wasi_elapsed:.3f} s")
    assert native_errno, f"native {op} did not time out"
    assert wasi_errno == from_os(OSError(native_errno, "")).errno
    assert 0.8 < native_elapsed < 3
    assert 0.8 < wasi_elapsed < 3
