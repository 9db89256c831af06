"""``sock_recv``, ``sock_send``, ``poll_oneoff`` and ``sock_accept`` in C when they finish at
once, and ``fd_fdstat_get``, ``fd_fdstat_set_flags`` and ``sock_shutdown`` of stream sockets
(``sockio.c``): a server's hot path without Python, about three times the requests per second
on 50 keep-alive connections (``benchmarks/serve.py``).

The C functions handle only a valid call on stream sockets that needs no wait, and hand
every other call to the Python host function they front (async or unchecked, as the Python
function is), so errors and waits keep one implementation. Python and C share per socket an
``IoRecord`` (its host descriptor, the guest's flags and rights, the counters poll and the
connection log read), per guest an ``FdMap`` from descriptor numbers to records, and for poll
a ``PollState``.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Callable
from typing import Any

import attrs
from wasmtime._ffi import dll as _dll


def _load() -> ctypes.CDLL:
    spec = importlib.util.find_spec(f"{__package__}._sockio")
    if spec is None or spec.origin is None:
        raise ImportError("wasmhost._native._sockio is not built: reinstall wasmhost (pip install .) with a C compiler")
    lib = ctypes.CDLL(spec.origin)
    lib.wasmhost_sockio_init(*(ctypes.cast(_dll[name], ctypes.c_void_p) for name in (
        "wasmtime_caller_export_get", "wasmtime_caller_context", "wasmtime_memory_data", "wasmtime_memory_data_size",
    )))  # fmt: skip
    return lib


_LIB = _load()
#: Linux errno -> WASI errno for the C functions (index 0: an errno with no WASI name).
ERRNOS = (ctypes.c_uint16 * 256).in_dll(_LIB, "wasmhost_errnos")
RECV: int = ctypes.cast(_LIB.wasmhost_sock_recv, ctypes.c_void_p).value or 0
SEND: int = ctypes.cast(_LIB.wasmhost_sock_send, ctypes.c_void_p).value or 0
POLL: int = ctypes.cast(_LIB.wasmhost_poll_oneoff, ctypes.c_void_p).value or 0
ACCEPT: int = ctypes.cast(_LIB.wasmhost_sock_accept, ctypes.c_void_p).value or 0
FDSTAT_GET: int = ctypes.cast(_LIB.wasmhost_fd_fdstat_get, ctypes.c_void_p).value or 0
FDSTAT_SET_FLAGS: int = ctypes.cast(_LIB.wasmhost_fd_fdstat_set_flags, ctypes.c_void_p).value or 0
SHUTDOWN: int = ctypes.cast(_LIB.wasmhost_sock_shutdown, ctypes.c_void_p).value or 0
#: ``IoRecord.seen`` of readiness poll has not reported.
NEVER = 2**64 - 1


class IoRecord(ctypes.Structure):
    """What C and Python both read and write about one socket (``struct io``)."""

    _fields_ = [
        ("os_fd", ctypes.c_int32),  # -1: the C path leaves every call to Python
        ("flags", ctypes.c_uint32),  # the guest's fdflags
        ("answered", ctypes.c_uint32),
        ("pollable", ctypes.c_uint32),  # poll may look at os_fd
        ("listening", ctypes.c_uint32),
        ("seq", ctypes.c_uint64),
        ("received", ctypes.c_uint64),
        ("sent", ctypes.c_uint64),
        ("seen", ctypes.c_uint64 * 2),  # seq when poll last reported FD_READ, FD_WRITE
        ("rights", ctypes.c_uint64),
        ("inheriting", ctypes.c_uint64),
    ]

    @classmethod
    def fresh(cls) -> IoRecord:
        """A new socket's record (a copy of bytes: the keyword constructor is several times slower)."""
        return cls.from_buffer_copy(_FRESH)


_FRESH = bytes(IoRecord(answered=1, pollable=1, seen=(NEVER, NEVER)))


class PollState(ctypes.Structure):
    """``poll_oneoff``'s state C and Python share (``struct pollstate``)."""

    _fields_ = [
        ("idle_ns", ctypes.c_uint64),  # how long stale readiness is held back now
        ("backoff", ctypes.c_uint32),  # whether it is held back at all
    ]


class _FdMapStruct(ctypes.Structure):
    _fields_ = [("fds", ctypes.POINTER(ctypes.c_void_p)), ("size", ctypes.c_uint32)]


class FdMap:
    """A guest's descriptor numbers -> ``IoRecord`` addresses, grown as numbers grow."""

    def __init__(self) -> None:
        self._slots = (ctypes.c_void_p * 0)()
        self.struct = _FdMapStruct(ctypes.cast(self._slots, ctypes.POINTER(ctypes.c_void_p)), 0)

    def put(self, fd: int, record: IoRecord | None) -> None:
        """Point ``fd`` at ``record`` (None: the number has no fast socket)."""
        if fd >= len(self._slots):
            if record is None:
                return
            grown = (ctypes.c_void_p * max(16, 2 * len(self._slots), fd + 1))(*self._slots)
            self._slots = grown
            self.struct.fds = ctypes.cast(grown, ctypes.POINTER(ctypes.c_void_p))
            self.struct.size = len(grown)
        self._slots[fd] = None if record is None else ctypes.addressof(record)

    def clear(self) -> None:
        ctypes.memset(self._slots, 0, ctypes.sizeof(self._slots))


class _FrontStruct(ctypes.Structure):
    _fields_ = [
        ("fallback", ctypes.c_void_p),
        ("map", ctypes.POINTER(_FdMapStruct)),
        ("calls", ctypes.c_uint64),
        ("state", ctypes.c_void_p),
    ]


@attrs.frozen
class Front:
    """A host function with a C fast path (``entry``) before its Python ``fallback``: an
    async C function before a coroutine function, an unchecked one before a plain one."""

    entry: int
    fallback: Callable[..., Any]
    fdmap: FdMap
    state: ctypes.Structure | None = None  # the C function's own, kept alive here

    def env(self, fallback: Any) -> _FrontStruct:
        """The C function's environment, given the fallback as a ctypes callback."""
        state = None if self.state is None else ctypes.addressof(self.state)
        return _FrontStruct(ctypes.cast(fallback, ctypes.c_void_p), ctypes.pointer(self.fdmap.struct), 0, state)
