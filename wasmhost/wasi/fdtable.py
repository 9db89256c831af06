"""The guest's descriptor table: one namespace for stdio, files, directories and sockets.

A descriptor object owns its host resource and knows its WASI file type, rights and flags;
the table hands out the lowest free number, as POSIX does, up to the guest's limit, and
checks rights on lookup. Host memory per write is bounded by what is written, never by
what the guest's iovecs name.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
from collections.abc import Callable, Sequence

from .._native.sockio import FdMap, IoRecord
from .abi import (
    DIR_RIGHTS,
    FDFLAG_APPEND,
    FDFLAG_NONBLOCK,
    FILE_RIGHTS,
    READ_ONLY_DIR_RIGHTS,
    READ_ONLY_FILE_RIGHTS,
    STDIO_RIGHTS,
    Errno,
    Filetype,
    WasiError,
    from_os,
)

Buffers = Sequence[memoryview]

log = logging.getLogger("wasmhost")

#: The default per-guest descriptor limit (``Limits.max_fds``): Linux's usual RLIMIT_NOFILE soft limit.
MAX_FDS = 1024
#: The most one read or write moves, as on Linux (MAX_RW_COUNT): the byte count fits the ABI's u32.
MAX_RW = 0x7FFFF000
#: The most one write hands to a Python callable: a guest write costs the host at most this much memory.
CALLBACK_CHUNK = 1 << 20


def span(bufs: Buffers, start: int, stop: int) -> list[memoryview]:
    """Views of bytes ``[start, stop)`` of the buffers taken end to end, without copying."""
    views = []
    offset = 0
    for buf in bufs:
        end = offset + len(buf)
        if end > start and offset < stop:
            views.append(buf[max(start - offset, 0) : min(stop, end) - offset])
        offset = end
        if offset >= stop:
            break
    return views


class Descriptor:
    """Base of every descriptor; unsupported operations report what the spec says."""

    filetype = Filetype.UNKNOWN

    def __init__(self, rights: int, inheriting: int = 0, flags: int = 0) -> None:
        self.rights = rights
        self.inheriting = inheriting
        self.flags = flags
        self.io_seq = 0  # bumped by every I/O call: poll tells fresh readiness from stale
        self._seen: dict[int, int] = {}

    def seen(self, kind: int) -> int | None:
        """``io_seq`` when poll last reported readiness of ``kind`` (None: never). Kept on the
        descriptor, not by number: a number reused by a new socket must not inherit it."""
        return self._seen.get(kind)

    def saw(self, kind: int) -> None:
        """Poll reports readiness of ``kind`` now."""
        self._seen[kind] = self.io_seq

    @property
    def io(self) -> IoRecord | None:
        """What the C fast paths of socket I/O and poll read (see ``_native.sockio``); None:
        every call on this descriptor is Python's."""
        return None

    def os_fd(self) -> int | None:
        """The host descriptor to poll for readiness, or None when always ready."""
        return None

    def host_fds(self) -> tuple[int, ...]:
        """Every host descriptor ``os_fd`` may return: what must be unwatched before closing."""
        fd = self.os_fd()
        return () if fd is None else (fd,)

    def blocks_host(self) -> bool:
        """Whether an I/O call could block the host thread (see ``OsFile``)."""
        return False

    def timeout(self, write: bool) -> float | None:
        """Seconds a blocking call may wait before it fails with ``AGAIN`` (None: forever)."""
        return None

    def readv(self, bufs: Buffers) -> int:
        raise WasiError(Errno.BADF)

    def writev(self, bufs: Buffers) -> int:
        raise WasiError(Errno.BADF)

    def set_flags(self, flags: int) -> None:
        self.flags = flags

    def stat(self) -> os.stat_result | None:
        return None

    def close(self) -> None:
        """Release the host resource (idempotent)."""


class NullStream(Descriptor):
    """stdio connected to nothing: reads see EOF, writes are discarded."""

    filetype = Filetype.CHARACTER_DEVICE

    def __init__(self) -> None:
        super().__init__(STDIO_RIGHTS)

    def readv(self, bufs: Buffers) -> int:
        return 0

    def writev(self, bufs: Buffers) -> int:
        return min(sum(len(b) for b in bufs), MAX_RW)


class BytesInput(NullStream):
    """stdin fed from bytes given by the embedder."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._pos = 0

    def readv(self, bufs: Buffers) -> int:
        total = 0
        for buf in bufs:
            chunk = self._data[self._pos : self._pos + len(buf)]
            buf[: len(chunk)] = chunk
            self._pos += len(chunk)
            total += len(chunk)
            if len(chunk) < len(buf):
                break
        return total


class CallbackOutput(NullStream):
    """stdout/stderr delivered to a Python callable, one call per guest write of up to
    ``CALLBACK_CHUNK`` bytes (a longer write is short, as a pipe's can be; libc writes the rest)."""

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        super().__init__()
        self._sink = sink

    def writev(self, bufs: Buffers) -> int:
        data = b"".join(span(bufs, 0, CALLBACK_CHUNK))
        if data:
            self._sink(data)
        return len(data)


class StderrTail(Descriptor):
    """Wraps the guest's stderr, keeping the last bytes written: a trap report can then
    quote what the guest said before it died, wherever its stderr goes."""

    LIMIT = 4096

    def __init__(self, inner: Descriptor) -> None:
        super().__init__(inner.rights, inner.inheriting, inner.flags)
        self.inner = inner
        self.filetype = inner.filetype
        self.tail = bytearray()

    def writev(self, bufs: Buffers) -> int:
        n = self.inner.writev(bufs)
        for view in span(bufs, max(n - self.LIMIT, 0), n):
            self.tail += view
        del self.tail[: -self.LIMIT]
        return n

    def readv(self, bufs: Buffers) -> int:
        return self.inner.readv(bufs)

    def os_fd(self) -> int | None:
        return self.inner.os_fd()

    def host_fds(self) -> tuple[int, ...]:
        return self.inner.host_fds()

    def blocks_host(self) -> bool:
        return self.inner.blocks_host()

    def set_flags(self, flags: int) -> None:
        self.flags = flags
        self.inner.set_flags(flags)

    def stat(self) -> os.stat_result | None:
        return self.inner.stat()

    def close(self) -> None:
        self.inner.close()


def _write_now(fd: int, bufs: Buffers) -> int:
    """Write to a pipe, terminal or socket (maybe shared with the host, so in blocking mode)
    without ever blocking the host's thread: what fits now (``RWF_NOWAIT``; ``AGAIN`` when
    nothing does), or where the kernel cannot, at most ``PIPE_BUF`` bytes, which a descriptor
    that polled writable takes at once. A full pipe nobody reads then suspends the guest."""
    try:
        return os.pwritev(fd, bufs, -1, os.RWF_NOWAIT)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
    return os.writev(fd, span(bufs, 0, select.PIPE_BUF))


class OsFile(Descriptor):
    """A host file descriptor: a regular file, a terminal, a pipe, inherited stdio."""

    def __init__(self, fd: int, rights: int, inheriting: int = 0, flags: int = 0, owned: bool = True) -> None:
        super().__init__(rights, inheriting, flags)
        self.fd = fd
        self._owned = owned
        self.filetype = filetype_of(os.fstat(fd).st_mode)

    def os_fd(self) -> int | None:
        return None if self.filetype == Filetype.REGULAR_FILE else self.fd

    def blocks_host(self) -> bool:
        """A terminal or pipe shared with the host process stays in blocking mode, so I/O
        waits for readiness first (interruptibly) instead of blocking inside the call."""
        return self.filetype != Filetype.REGULAR_FILE and not self.flags & FDFLAG_NONBLOCK

    def readv(self, bufs: Buffers) -> int:
        try:
            return os.readv(self.fd, bufs)
        except OSError as exc:
            raise from_os(exc) from None

    def writev(self, bufs: Buffers) -> int:
        try:
            if self.filetype != Filetype.REGULAR_FILE:
                return _write_now(self.fd, bufs)
            if self.flags & FDFLAG_APPEND:
                os.lseek(self.fd, 0, os.SEEK_END)
            return os.writev(self.fd, bufs)
        except OSError as exc:
            raise from_os(exc) from None

    def stat(self) -> os.stat_result:
        try:
            return os.fstat(self.fd)
        except OSError as exc:
            raise from_os(exc) from None

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if self._owned and fd >= 0:
            try:
                os.close(fd)  # on Linux the number is released even when close fails
            except OSError as exc:
                raise from_os(exc) from None


class Directory(OsFile):
    """An open directory; ``preopen`` is the guest name when the host granted it."""

    filetype = Filetype.DIRECTORY

    def __init__(self, fd: int, rights: int, inheriting: int, preopen: str | None = None) -> None:
        super().__init__(fd, rights, inheriting)
        self.preopen = preopen
        self.listing: list[tuple[bytes, int, Filetype]] = []

    @classmethod
    def open_preopen(cls, host_path: str, guest_path: str, read_only: bool) -> Directory:
        fd = os.open(host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        rights = READ_ONLY_DIR_RIGHTS if read_only else DIR_RIGHTS
        inheriting = rights | (READ_ONLY_FILE_RIGHTS if read_only else FILE_RIGHTS)
        return cls(fd, rights, inheriting, guest_path)

    def readv(self, bufs: Buffers) -> int:
        raise WasiError(Errno.ISDIR)

    def writev(self, bufs: Buffers) -> int:
        raise WasiError(Errno.ISDIR)

    def read_listing(self) -> list[tuple[bytes, int, Filetype]]:
        """A fresh snapshot of (name, inode, type) with ``.`` and ``..`` first; names are the
        host's bytes, whatever their encoding."""
        try:
            st = os.fstat(self.fd)
            entries = [(b".", st.st_ino, Filetype.DIRECTORY), (b"..", 0, Filetype.DIRECTORY)]
            with os.scandir(self.fd) as it:
                entries += [(os.fsencode(entry.name), entry.inode(), _entry_type(entry)) for entry in it]
        except OSError as exc:
            raise from_os(exc) from None
        self.listing = entries
        return entries


def _entry_type(entry: os.DirEntry[str]) -> Filetype:
    """An entry's type; ``UNKNOWN`` when it vanished since the directory was read."""
    try:
        return filetype_of(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return Filetype.UNKNOWN


_MODE_TYPES = [
    (stat.S_ISREG, Filetype.REGULAR_FILE),
    (stat.S_ISDIR, Filetype.DIRECTORY),
    (stat.S_ISCHR, Filetype.CHARACTER_DEVICE),
    (stat.S_ISBLK, Filetype.BLOCK_DEVICE),
    (stat.S_ISLNK, Filetype.SYMBOLIC_LINK),
    (stat.S_ISSOCK, Filetype.SOCKET_STREAM),
]


def filetype_of(mode: int) -> Filetype:
    """The WASI file type of a host ``st_mode``."""
    return next((kind for test, kind in _MODE_TYPES if test(mode)), Filetype.UNKNOWN)


class FdTable:
    """Maps guest descriptor numbers to descriptors, at most ``limit`` of them.

    Numbers come from ``native`` (the lowest free first, as POSIX does), which C shares: a
    connection the C accept path takes there has no descriptor object until Python first
    needs it, when ``adopt`` makes one from its record.
    """

    def __init__(self, limit: int = MAX_FDS) -> None:
        self._fds: dict[int, Descriptor] = {}
        self.native = FdMap(limit)
        #: Called the first time the table is full (the instance logs it once).
        self.on_full: Callable[[int], None] | None = None
        #: Called with a descriptor's ``host_fds`` before it is closed.
        self.on_close: Callable[[tuple[int, ...]], None] = lambda _fds: None
        #: Makes the descriptor of a connection C accepted, from its record (set by the
        #: sockets layer, the only one that lets C accept).
        self.adopt: Callable[[IoRecord], Descriptor] | None = None

    def add(self, desc: Descriptor) -> int:
        """Give ``desc`` a number; at the limit, close it and raise ``MFILE``.

        The table owns ``desc`` from the call on, so no caller leaks a host resource.
        """
        if self.native.count >= self.native.limit:
            _close_quietly(desc)
            report, self.on_full = self.on_full, None
            if report is not None:
                report(self.native.limit)
            raise WasiError(Errno.MFILE)
        fd = self.native.take(desc.io)
        self._fds[fd] = desc
        return fd

    def get(self, fd: int, rights: int = 0) -> Descriptor:
        """The descriptor, after checking it holds ``rights`` (``NOTCAPABLE`` if not)."""
        desc = self._fds.get(fd)
        if desc is None:
            desc = self._adopted(fd)
        if rights & ~desc.rights:
            raise WasiError(Errno.NOTCAPABLE)
        return desc

    def _adopted(self, fd: int) -> Descriptor:
        """The descriptor of a connection C accepted as ``fd``, made now; ``BADF`` if none."""
        if self.adopt is None or (record := self.native.bare(fd)) is None:
            raise WasiError(Errno.BADF)
        desc = self._fds[fd] = self.adopt(record)
        return desc

    def directory(self, fd: int, rights: int) -> Directory:
        desc = self.get(fd, rights)
        if not isinstance(desc, Directory):
            raise WasiError(Errno.NOTDIR)
        return desc

    def close(self, fd: int) -> None:
        """Forget ``fd`` and close its resource; a failing close still frees the number."""
        desc = self.get(fd)
        del self._fds[fd]
        self.native.free(fd)
        self.on_close(desc.host_fds())
        desc.close()

    def renumber(self, fd: int, to: int) -> None:
        moved, replaced = self.get(fd), self.get(to)
        if fd != to:
            del self._fds[fd]
            self._fds[to] = moved
            self.native.free(fd)
            self.native.put(to, moved.io)
            self.on_close(replaced.host_fds())
            _close_quietly(replaced, to)  # as dup2 does, a failing close of the target is not reported

    def items(self) -> list[tuple[int, Descriptor]]:
        for fd in self.native.bare_fds():
            self._adopted(fd)
        return list(self._fds.items())

    def close_all(self) -> None:
        """Release every host resource the guest still holds; a close that fails is logged
        (the guest is gone, nobody else can act on it) and the others still happen."""
        descs = self.items()
        self._fds.clear()
        self.native.clear()
        for fd, desc in descs:
            self.on_close(desc.host_fds())
            _close_quietly(desc, fd)


def _close_quietly(desc: Descriptor, fd: int | None = None) -> None:
    try:
        desc.close()
    except (WasiError, OSError) as exc:
        log.warning("closing guest descriptor %s failed: %s", "over the limit" if fd is None else fd, exc)
