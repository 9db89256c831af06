"""One guest's worth of real host state, for calling host functions directly: a descriptor
table (stdio, a preopen, a read-only preopen, a file, sockets, a pipe), 64 KiB of memory
and both function sets. Shared by the boundary tests and the host-function fuzz target.

Every descriptor is non-blocking and the context is already stopped, so a call that would
wait raises ``Interrupted`` at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from collections.abc import Callable
from pathlib import Path

from wasmhost.net.policy import Network
from wasmhost.wasi.abi import FDFLAG_NONBLOCK, FILE_RIGHTS, STDIO_RIGHTS, WasiError
from wasmhost.wasi.context import Interrupted, ProcExit, WasiContext
from wasmhost.wasi.fdtable import (
    BytesInput,
    CallbackOutput,
    Descriptor,
    Directory,
    FdTable,
    NullStream,
    OsFile,
    StderrTail,
)
from wasmhost.wasi.memory import GuestMemory
from wasmhost.wasi.preview1 import Preview1
from wasmhost.wasi.sockets import Socket, Sockets

SIZE = 64 * 1024
#: 0-2 stdio, 3 preopen, 4 read-only preopen, 5 file, 6 TCP listener, 7 UDP, 8 pipe, then
#: 9 a TCP connection to the listener when asked for (``connected``), else nothing.
FDS = range(10)


def make_sandbox(root: Path) -> Path:
    """The directories the preopens name: files, a symlink and a name that is not UTF-8."""
    (root / "rw" / "sub").mkdir(parents=True)
    (root / "ro").mkdir()
    (root / "rw" / "file.txt").write_bytes(b"0123456789")
    (root / "ro" / "file.txt").write_bytes(b"read only")
    os.symlink("file.txt", root / "rw" / "link")
    os.close(os.open(os.fsencode(root / "rw") + b"/caf\xe9", os.O_CREAT | os.O_WRONLY))
    return root


class World:
    """One guest's worth of host state: a descriptor table, memory, both function sets.

    ``connected`` adds fd 9, a TCP connection to the listener at fd 6 (which then has one
    connection to accept), so that send and receive reach a live peer.
    """

    def __init__(
        self,
        root: Path,
        loop: asyncio.AbstractEventLoop,
        memory: bytes = b"",
        *,
        network: Network | None = None,
        connected: bool = False,
    ) -> None:
        self.buffer = bytearray(memory.ljust(SIZE, b"\0")[:SIZE])
        fds = FdTable()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        pipe_r, self._pipe_w = os.pipe()
        os.set_blocking(pipe_r, False)
        descs: list[Descriptor] = [
            BytesInput(b"standard input"),
            CallbackOutput(lambda _data: None),
            StderrTail(NullStream()),
            Directory.open_preopen(str(root / "rw"), "/rw", read_only=False),
            Directory.open_preopen(str(root / "ro"), "/ro", read_only=True),
            OsFile(os.open(root / "rw" / "file.txt", os.O_RDWR | os.O_CLOEXEC), FILE_RIGHTS),
            Socket(listener, FDFLAG_NONBLOCK),
            Socket(udp, FDFLAG_NONBLOCK),
            OsFile(pipe_r, STDIO_RIGHTS, flags=FDFLAG_NONBLOCK),
        ]
        if connected:
            descs.append(Socket(socket.create_connection(listener.getsockname()), FDFLAG_NONBLOCK))
        for desc in descs:
            fds.add(desc)
        self.ctx = WasiContext([b"guest", b"arg"], [b"K=V"], fds, lambda: "stopped before the call")
        self.ctx.memory = GuestMemory.of_buffer(self.buffer)
        self.ctx.loop = loop
        self.preview1 = Preview1(self.ctx)
        self.sockets = Sockets(self.ctx, network or Network(), "world")

    def call(self, provider: str, name: str, args: tuple[int, ...]) -> str:
        """The outcome of one call: an errno name, or how the guest legitimately ends or waits."""
        return outcome(getattr(getattr(self, provider), name), args, self.ctx.loop)

    def close(self) -> None:
        self.ctx.close()
        os.close(self._pipe_w)


def outcome(func: Callable[..., object], args: tuple[int, ...], loop: asyncio.AbstractEventLoop | None) -> str:
    """Call a host function (driving it on ``loop`` if it is a coroutine); anything but an
    errno, an exit or a stop propagates."""
    try:
        result = func(*args)
        if inspect.iscoroutine(result):
            assert loop is not None
            loop.run_until_complete(asyncio.wait_for(result, 10))
    except WasiError as exc:
        return exc.errno.name
    except ProcExit:
        return "exit"
    except Interrupted:
        return "would wait"
    return "SUCCESS"
