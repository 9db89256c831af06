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
CLOSE: int = ctypes.cast(_LIB.wasmhost_fd_close, ctypes.c_void_p).value or 0
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
        ("bare", ctypes.c_uint32),  # accepted in C, no Python descriptor yet
        ("port", ctypes.c_int32),  # the guest's port when the host's differs (-1: none)
        ("seq", ctypes.c_uint64),
        ("received", ctypes.c_uint64),
        ("sent", ctypes.c_uint64),
        ("seen", ctypes.c_uint64 * 2),  # seq when poll last reported FD_READ, FD_WRITE
        ("rights", ctypes.c_uint64),
        ("inheriting", ctypes.c_uint64),
    ]

    @classmethod
    def fresh(cls) -> IoRecord:
        """A new socket's record, as C fills one for a connection it accepts (a copy of
        bytes: the keyword constructor is several times slower)."""
        return cls.from_buffer_copy(FRESH)


#: Every new socket's record starts as a copy of this (``wasmhost.wasi.sockets`` sets the rights).
FRESH = IoRecord.in_dll(_LIB, "wasmhost_fresh_socket")
FRESH.answered = FRESH.pollable = 1
FRESH.port = -1
FRESH.seen[:] = (NEVER, NEVER)
#: The record of every descriptor that is not a stream socket: C leaves its calls to Python.
_OTHER = IoRecord(os_fd=-1)


class PollState(ctypes.Structure):
    """``poll_oneoff``'s state C and Python share (``struct pollstate``)."""

    _fields_ = [
        ("idle_ns", ctypes.c_uint64),  # how long stale readiness is held back now
        ("backoff", ctypes.c_uint32),  # whether it is held back at all
    ]


class ConnCounts(ctypes.Structure):
    """A guest's accepted connections as C counts them too (``struct conns``)."""

    _fields_ = [
        ("accepted", ctypes.c_uint64),
        ("open", ctypes.c_uint64),
        ("bare", ctypes.c_uint32),  # C may accept and close connections itself
        ("notify_at", ctypes.c_uint64),  # the total whose accept Python must make (Connections.when_accepted)
    ]


_Slots = ctypes.POINTER(ctypes.c_void_p)


class _FdMapStruct(ctypes.Structure):
    _fields_ = [
        ("fds", _Slots),
        ("size", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("limit", ctypes.c_uint32),
        ("low", ctypes.c_uint32),
        ("spare", _Slots),
        ("nspare", ctypes.c_uint32),
        ("spares", ctypes.c_uint32),
        ("conns", ctypes.POINTER(ConnCounts)),
    ]


_take = _LIB.wasmhost_fdmap_take
_take.argtypes = [ctypes.POINTER(_FdMapStruct), ctypes.c_void_p]
_take.restype = ctypes.c_int64
_free = _LIB.wasmhost_fdmap_free
_free.argtypes = [ctypes.POINTER(_FdMapStruct), ctypes.c_uint32]
_free.restype = None

#: Spare records a listening guest keeps for C to accept into: connections accepted beyond
#: this many while Python does not run are accepted in Python, which refills them.
SPARES = 32


class FdMap:
    """A guest's descriptor numbers as C sees them: which are in use, and the socket record
    of each. Both Python (``FdTable``) and C (a connection it accepts) take numbers here.

    A connection C accepted is *bare*: it has a record and a number, and no Python object
    until Python asks for it (``bare``).
    """

    def __init__(self, limit: int) -> None:
        self._slots = (ctypes.c_void_p * 0)()
        self._spare = (ctypes.c_void_p * 0)()
        #: The records C may hold (spare or bare), by address.
        self._records: dict[int, IoRecord] = {}
        self._conns: ConnCounts | None = None  # kept alive while C points at it
        self.struct = _FdMapStruct(ctypes.cast(self._slots, _Slots), 0, 0, limit)
        self._ref = ctypes.byref(self.struct)

    @property
    def count(self) -> int:
        """Numbers in use."""
        count: int = self.struct.count
        return count

    @property
    def limit(self) -> int:
        """The most numbers the guest may hold."""
        limit: int = self.struct.limit
        return limit

    def take(self, record: IoRecord | None) -> int:
        """The lowest free number, now pointing at ``record`` (None: not a stream socket)."""
        if self.struct.count >= len(self._slots):
            grown = (ctypes.c_void_p * max(16, 2 * len(self._slots)))(*self._slots)
            self._slots = grown
            self.struct.fds = ctypes.cast(grown, _Slots)
            self.struct.size = len(grown)
        fd: int = _take(self._ref, ctypes.addressof(_OTHER if record is None else record))
        return fd

    def put(self, fd: int, record: IoRecord | None) -> None:
        """Point ``fd``, in use, at ``record`` instead."""
        self._slots[fd] = ctypes.addressof(_OTHER if record is None else record)

    def free(self, fd: int) -> None:
        _free(self._ref, fd)

    def clear(self) -> None:
        ctypes.memset(self._slots, 0, ctypes.sizeof(self._slots))
        self.struct.count = self.struct.low = 0

    def accepting(self, conns: ConnCounts) -> None:
        """Let C accept connections into spare records, counting them in ``conns``; refill
        them. Called by Python's accept: a listener nobody connects to costs no memory."""
        if not self._spare:  # the first accept: set up once
            self._conns = conns
            self.struct.conns = ctypes.pointer(conns)
            # Room for every record C may hold: the spares, and one per connection it accepted,
            # which its fd_close gives back.
            self._spare = (ctypes.c_void_p * (SPARES + self.limit))()
            self.struct.spare = ctypes.cast(self._spare, _Slots)
            self.struct.spares = len(self._spare)
        self._refill()

    def _refill(self) -> None:
        """Bring C's spare records back to ``SPARES``: new ones after accepts, fewer after the
        connections accepted before a refill came back."""
        while self.struct.nspare < SPARES:
            record = IoRecord()
            self._records[ctypes.addressof(record)] = record
            self._spare[self.struct.nspare] = ctypes.addressof(record)
            self.struct.nspare += 1
        while self.struct.nspare > SPARES:
            self.struct.nspare -= 1
            del self._records[self._spare[self.struct.nspare] or 0]

    def bare(self, fd: int) -> IoRecord | None:
        """The record of ``fd`` if C accepted it and Python never asked; from now on Python owns it."""
        address = self._slots[fd] if fd < len(self._slots) else None
        record = self._records.pop(address, None) if address else None  # spare records are in no slot
        if record is not None:
            record.bare = 0
        return record

    def bare_fds(self) -> list[int]:
        """The numbers C accepted that Python never asked for."""
        return [fd for fd, address in enumerate(self._slots) if address in self._records]


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
