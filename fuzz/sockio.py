"""Fuzz target: sock_recv, sock_send, poll_oneoff, sock_accept, fd_fdstat_get,
fd_fdstat_set_flags, sock_shutdown and fd_close with the C fast paths (wasmhost/_native/sockio.c) and
without them, on the same arguments, guest memory and socket
state (``tests.wasi.sockio_pair``). A difference between the two is a finding; so is a crash,
which only C code can cause here.

    byte 0      bit 0: a send, else a receive; bit 1: a non-blocking socket; bit 2: the peer
                has shut down its side; bit 3: a poll_oneoff instead (bits 0-2 unused);
                bit 4: an accept on a listener instead (bit 0: sock_accept_v2; the peer
                connects when it sends something); bit 5: by bits 6-7, fd_fdstat_get,
                fd_fdstat_set_flags, sock_shutdown or fd_close instead (fd_close: on a
                listener, which first accepts a connection if the peer sends something)
    byte 1      the descriptor: the socket below 192, else stdout, a free number or 2**32-1
                (a poll names its descriptors in its subscriptions: the socket is 3; for
                fd_close, below 96 the connection accepted, 4)
    bytes 2-21  the call's other arguments, u32 little endian (a send and a poll take four)
    byte 22     how many of the following bytes the peer sends before the call
    the rest    the first bytes of the guest's 64 KiB memory

Nothing may wait long. A blocking receive with the peer's side open could wait for ever: it
is made non-blocking, and so is a blocking accept with no connection. Before a poll the peer
shuts its side down, so the socket is ready both ways (and stdio is connected to nothing,
which is always ready), and every clock's timeout becomes 0 or 1 ms.
"""

from __future__ import annotations

import struct

from tests.wasi.sockio_pair import PAGE, SOCKET_FD, Side, compare
from wasmhost.wasi.abi import SUB_CLOCK, SUB_FD, SUBSCRIPTION
from wasmhost.wasi.poll import CLOCK, FD_READ, FD_WRITE

_OTHER_FDS = (1, 99, 2**32 - 1)
_ACCEPTED = SOCKET_FD + 1
_HEAD = 23


def decode(data: bytes) -> tuple[bool, dict[str, object]]:
    """(non-blocking, the call's keywords for ``compare``) of an input."""
    data = data.ljust(_HEAD, b"\0")
    send, nonblock, peer_shut = bool(data[0] & 1), bool(data[0] & 2), bool(data[0] & 4)
    fd = None if data[1] < 192 else _OTHER_FDS[data[1] % len(_OTHER_FDS)]
    args = list(struct.unpack_from("<5I", data, 2))
    pending = data[_HEAD : _HEAD + data[22]]
    memory = data[_HEAD + len(pending) :][:PAGE]
    if data[0] & 8:
        writes = [(0, _short_clocks(memory, args[0], args[2]))]
        return True, {"op": "poll", "fd": None, "args": args[:4], "pending": pending, "peer_shut": True,
                      "writes": writes}  # fmt: skip
    if data[0] & 32 and data[0] >> 6 == 3:
        close = {"op": "close", "fd": _ACCEPTED if data[1] < 96 else fd, "args": [], "pending": b"", "peer_shut": False}
        return True, {**close, "listener": True, "prepare": _accept if pending else None, "writes": [(0, memory)]}
    if data[0] & 32:
        op = ("fdstat", "set_flags", "shutdown")[data[0] >> 6]
        call = {"op": op, "fd": fd, "args": args[:1], "pending": pending, "peer_shut": peer_shut}
        return nonblock, {**call, "writes": [(0, memory)]}  # these calls never wait
    if data[0] & 16:
        op, arity = ("accept2", 2) if send else ("accept", 1)
        accept = {"op": op, "fd": fd, "args": args[:arity], "pending": pending, "peer_shut": peer_shut}
        return nonblock or not pending, {**accept, "listener": True, "writes": [(0, memory)]}
    call = {
        "op": "send" if send else "recv",
        "fd": fd,
        "args": args[:4] if send else args,
        "pending": pending,
        "peer_shut": peer_shut,
        "writes": [(0, memory)],
    }
    return nonblock or not (send or peer_shut), call


def _accept(side: Side) -> None:
    """A connection accepted before the call, in C where it can be."""
    side.peer.connect(side.guest.getsockname())
    side.instance.call("accept", SOCKET_FD, 0)


def _short_clocks(memory: bytes, in_ptr: int, nsubs: int) -> bytes:
    """``memory`` with the timeout of every clock subscription at ``in_ptr`` 0 or 1 ms (an
    absolute time that small is past): no wait is long, and clocks due later are all due at
    once, so which of them fire does not depend on timing. Past ``memory`` the guest's memory
    is zeros, so it is extended with zeros over the subscriptions it cuts short."""
    end = min(PAGE, in_ptr + 48 * nsubs)
    cut = bytearray(memory.ljust(end, b"\0"))
    for offset in range(in_ptr, end - 47, 48):
        if cut[offset + 8] == CLOCK:
            timeout = struct.unpack_from("<Q", cut, offset + 24)[0]
            struct.pack_into("<Q", cut, offset + 24, timeout % 2 * 1_000_000)
    return bytes(cut)


def encode(op: str, flags: int, args: tuple[int, ...], pending: bytes, memory: bytes, fd: int = 0) -> bytes:
    """An input for one call (``flags``: byte 0's bits above the operation): how seeds are written."""
    flags |= {"recv": 0, "send": 1, "poll": 8, "accept": 16, "accept2": 17, "fdstat": 32, "set_flags": 96,
              "shutdown": 160, "close": 224}[op]  # fmt: skip
    head = bytes([flags, fd]) + struct.pack("<5I", *args, *[0] * (5 - len(args)))
    return head + bytes([len(pending)]) + pending + memory


def one_input(data: bytes) -> None:
    nonblock, call = decode(data)
    compare(nonblock, **call)


def seeds() -> dict[str, bytes]:
    """A receive and a send that move bytes, and refusals C must leave to Python."""
    iovec = bytes(16) + struct.pack("<II", 1024, 64)
    out_ptrs = (512, 516)

    def poll_args(nsubs: int) -> tuple[int, ...]:
        return (64, 1024, nsubs, 512)  # subscriptions at 64 (``_subs``), events at 1024

    return {
        "recv": encode("recv", 2, (16, 1, 0, *out_ptrs), b"hello", iovec),
        "recv-eof-blocking": encode("recv", 4, (16, 1, 0, *out_ptrs), b"bye", iovec),
        "recv-again": encode("recv", 2, (16, 1, 0, *out_ptrs), b"", iovec),
        "recv-peek": encode("recv", 2, (16, 1, 1, *out_ptrs), b"peek", iovec),
        "recv-fault": encode("recv", 2, (16, 1, 0, PAGE - 2, 516), b"x", iovec),
        "send": encode("send", 2, (16, 1, 0, 512), b"", iovec),
        "send-blocking": encode("send", 0, (16, 1, 0, 512), b"", iovec),
        "send-not-a-socket": encode("send", 2, (16, 1, 0, 512), b"", iovec, fd=200),
        "poll": encode("poll", 0, poll_args(3), b"GET /", _subs((FD_READ, 3), (FD_WRITE, 3), (CLOCK, 1, 0))),
        "poll-stdout": encode("poll", 0, poll_args(2), b"", _subs((FD_WRITE, 1), (FD_READ, 3))),
        "poll-clock": encode("poll", 0, poll_args(1), b"", _subs((CLOCK, 1, 1))),  # 1 ms
        "accept-again": encode("accept", 2, (512,), b"", b""),
        "accept": encode("accept", 2, (512,), b"GET /", b""),
        "accept-v2": encode("accept2", 2, (0, 512), b"", b""),
        "accept-v2-flags": encode("accept2", 2, (0x20, 512), b"", b""),
        "fdstat": encode("fdstat", 0, (512,), b"", b""),
        "set-flags": encode("set_flags", 0, (4,), b"", b""),
        "shutdown": encode("shutdown", 0, (2,), b"x", b""),
        "close-accepted": encode("close", 0, (), b"x", b""),
        "close-listener": encode("close", 0, (), b"x", b"", fd=100),
        "close-nothing-accepted": encode("close", 0, (), b"", b""),
    }


def _subs(*specs: tuple[int, ...]) -> bytes:
    """Guest memory holding subscriptions at 64: (type, fd) or (CLOCK, clock id, relative timeout)."""
    array = b""
    for userdata, (kind, *body) in enumerate(specs):
        packed = SUB_CLOCK.pack(body[0], body[1], 0, 0) if kind == CLOCK else SUB_FD.pack(body[0])
        array += SUBSCRIPTION.pack(userdata, kind, packed)
    return bytes(64) + array
