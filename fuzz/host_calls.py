"""Fuzz target: any preview1 or socket host function, with any arguments, over any guest memory.

An input is up to four calls, made in turn over one fresh guest's state (``tests.wasi.world``:
stdio, preopens, a file, a listener, a UDP socket, a pipe and a live TCP connection):

    byte 0          number of calls - 1 (low two bits)
    per call        u16 function index, then 8 bytes per parameter (little endian)
    the rest        the first bytes of the guest's 64 KiB memory

The context is stopped before the first call, so a call that would wait ends at once with
``Interrupted``. A finding is anything else escaping (only ``WasiError``, ``ProcExit`` and
``Interrupted`` may), a descriptor number that no longer resolves to an open resource, a
descriptor handed out twice, or a host descriptor left open after the guest's state is closed.
"""

from __future__ import annotations

import os
import struct

from tests.wasi.world import World
from wasmhost.net.policy import Network
from wasmhost.wasi.abi import IOVEC
from wasmhost.wasi.fdtable import NullStream
from wasmhost.wasi.preview1 import FUNCTIONS
from wasmhost.wasi.sockets import SOCKET_FUNCTIONS

from .scratch import Scratch, open_fds

#: (provider, method, wasm parameter types), in a fixed order: an input's function index.
CALLS = sorted(
    {("preview1", method, params) for _name, params, method in FUNCTIONS}
    | {("sockets", method, params) for _name, params, method in SOCKET_FUNCTIONS}
)
MAX_CALLS = 4
_NETWORK = Network(bind_address="127.0.0.1")  # what the guest binds stays on loopback; outbound is denied


_host: Scratch | None = None


def decode(data: bytes) -> tuple[list[tuple[str, str, tuple[int, ...]]], bytes]:
    """The calls (provider, method, arguments) and the memory an input stands for."""
    calls = []
    pos = 1
    for _ in range(((data[0] & 3) + 1) if data else 0):
        if pos + 2 > len(data):
            break
        provider, method, params = CALLS[struct.unpack_from("<H", data, pos)[0] % len(CALLS)]
        pos += 2
        raw = data[pos : pos + 8 * len(params)].ljust(8 * len(params), b"\0")
        pos += 8 * len(params)
        values = struct.unpack(f"<{len(params)}Q", raw)
        args = tuple(v if kind == "I" else v & 0xFFFF_FFFF for v, kind in zip(values, params, strict=True))
        calls.append((provider, method, args))
    return calls, data[pos:]


def encode(calls: list[tuple[str, tuple[int, ...]]], memory: bytes) -> bytes:
    """An input making ``calls`` (method, arguments) over ``memory``: how seeds are written."""
    index = {method: i for i, (_provider, method, _params) in enumerate(CALLS)}
    out = bytearray([len(calls) - 1])
    for method, args in calls:
        out += struct.pack("<H", index[method]) + struct.pack(f"<{len(args)}Q", *args)
    return bytes(out + memory)


def seed_memory() -> bytes:
    """Memory that gets calls past their first checks: an iovec array at 16 naming 64 bytes at
    1024, and there the name of a file in the preopen."""
    iovecs = IOVEC.pack(1024, 64) * 4
    return bytes(16) + iovecs + bytes(1024 - 16 - len(iovecs)) + b"file.txt\0"


def _check_table(world: World) -> None:
    """Every number in the table names an open resource, and a new descriptor gets a free number."""
    items = world.ctx.fds.items()
    for fd, desc in items:
        assert world.ctx.fds.get(fd) is desc
        osfd = desc.os_fd()
        if osfd is not None:
            assert osfd >= 0, f"fd {fd} ({type(desc).__name__}) is in the table but closed"
            os.fstat(osfd)
    assert len({id(desc) for _fd, desc in items}) == len(items), "one descriptor under two numbers"
    fresh = world.ctx.fds.add(NullStream())
    assert fresh not in dict(items), f"fd {fresh} handed out while in use"
    world.ctx.fds.close(fresh)


def one_input(data: bytes) -> None:
    global _host
    if _host is None:
        _host = Scratch()
    calls, memory = decode(data)
    root = _host.sandbox()
    before = open_fds()
    world = World(root, _host.loop, memory, network=_NETWORK, connected=True)
    try:
        for provider, method, args in calls:
            world.call(provider, method, args)
            _check_table(world)
    finally:
        world.close()
    leaked = open_fds() - before
    assert not leaked, f"host descriptors {sorted(leaked)} leaked by {[(m, a) for _p, m, a in calls]}"


def seeds() -> dict[str, bytes]:
    """Each function once with plausible arguments over ``seed_memory``, then a few sequences."""
    rights = 0x1FFFFFFF
    out = {}
    for _provider, method, params in CALLS:
        fd = 9 if method.startswith("sock_") else 3 if method.startswith("path_") else 5
        args = [fd, *(16 if kind == "i" else 0 for kind in params[1:])]
        if method.startswith("path_") and len(args) > 3:
            args[1:3] = [1024, 8] if method != "path_filestat_get" else [0, 1024]
        out[method] = encode([(method, tuple(args))], seed_memory())
    opened = ("path_open", (3, 0, 1024, 8, 9, rights, rights, 0, 2048))
    out["open-read-close"] = encode([opened, ("fd_read", (10, 16, 1, 2048)), ("fd_close", (10,))], seed_memory())
    out["accept-send-recv"] = encode(
        [
            ("sock_accept_v2", (6, 0, 2048)),
            ("sock_send", (9, 16, 1, 0, 2048)),
            ("sock_recv", (10, 16, 1, 0, 2048, 2052)),
        ],
        seed_memory(),
    )
    out["renumber-close"] = encode([("fd_renumber", (5, 8)), ("fd_close", (8,)), ("fd_read", (5, 16, 1, 2048))], b"")
    return out
