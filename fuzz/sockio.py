"""Fuzz target: sock_recv and sock_send with the C fast path (wasmhost/_native/sockio.c) and
without it, on the same arguments, guest memory and socket state (``tests.wasi.sockio_pair``).
A difference between the two is a finding; so is a crash, which only C code can cause here.

    byte 0      bit 0: a send, else a receive; bit 1: a non-blocking socket; bit 2: the peer
                has shut down its side
    byte 1      the descriptor: the socket below 192, else stdout, a free number or 2**32-1
    bytes 2-21  the call's other arguments, u32 little endian (a send takes four of the five)
    byte 22     how many of the following bytes the peer sends before the call
    the rest    the first bytes of the guest's 64 KiB memory

A blocking receive with the peer's side open could wait for ever: it is made non-blocking.
"""

from __future__ import annotations

import struct

from tests.wasi.sockio_pair import PAGE, compare

_OTHER_FDS = (1, 99, 2**32 - 1)
_HEAD = 23


def decode(data: bytes) -> tuple[bool, dict[str, object]]:
    """(non-blocking, the call's keywords for ``compare``) of an input."""
    data = data.ljust(_HEAD, b"\0")
    send, nonblock, peer_shut = bool(data[0] & 1), bool(data[0] & 2), bool(data[0] & 4)
    fd = None if data[1] < 192 else _OTHER_FDS[data[1] % len(_OTHER_FDS)]
    args = list(struct.unpack_from("<5I", data, 2))
    pending = data[_HEAD : _HEAD + data[22]]
    memory = data[_HEAD + len(pending) :][:PAGE]
    call = {
        "op": "send" if send else "recv",
        "fd": fd,
        "args": args[:4] if send else args,
        "pending": pending,
        "peer_shut": peer_shut,
        "writes": [(0, memory)],
    }
    return nonblock or not (send or peer_shut), call


def encode(op: str, flags: int, args: tuple[int, ...], pending: bytes, memory: bytes, fd: int = 0) -> bytes:
    """An input for one call (``flags``: byte 0's bits above the operation): how seeds are written."""
    head = bytes([flags | (op == "send"), fd]) + struct.pack("<5I", *args, *[0] * (5 - len(args)))
    return head + bytes([len(pending)]) + pending + memory


def one_input(data: bytes) -> None:
    nonblock, call = decode(data)
    compare(nonblock, **call)


def seeds() -> dict[str, bytes]:
    """A receive and a send that move bytes, and refusals C must leave to Python."""
    iovec = bytes(16) + struct.pack("<II", 1024, 64)
    out_ptrs = (512, 516)
    return {
        "recv": encode("recv", 2, (16, 1, 0, *out_ptrs), b"hello", iovec),
        "recv-eof-blocking": encode("recv", 4, (16, 1, 0, *out_ptrs), b"bye", iovec),
        "recv-again": encode("recv", 2, (16, 1, 0, *out_ptrs), b"", iovec),
        "recv-peek": encode("recv", 2, (16, 1, 1, *out_ptrs), b"peek", iovec),
        "recv-fault": encode("recv", 2, (16, 1, 0, PAGE - 2, 516), b"x", iovec),
        "send": encode("send", 2, (16, 1, 0, 512), b"", iovec),
        "send-blocking": encode("send", 0, (16, 1, 0, 512), b"", iovec),
        "send-not-a-socket": encode("send", 2, (16, 1, 0, 512), b"", iovec, fd=200),
    }
