"""The guest's descriptor table: one namespace for stdio, files, directories and sockets.

A descriptor object owns its host resource and knows its WASI file type, rights and flags;
the table hands out the lowest free number, as POSIX does, and checks rights on lookup.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence

from .abi import (
    DIR_RIGHTS,
    FDFLAG_APPEND,
    FDFLAG_NONBLOCK,
    FILE_RIGHTS,
    READ_ONLY_DIR_RIGHTS,
    STDIO_RIGHTS,
    Errno,
    Filetype,
    Rights,
    WasiError,
    from_os,
)

Buffers = Sequence[memoryview]


class Descriptor:
    """Base of every descriptor; unsupported operations report what the spec says."""

    filetype = Filetype.UNKNOWN

    def __init__(self, rights: int, inheriting: int = 0, flags: int = 0) -> None:
        self.rights = rights
        self.inheriting = inheriting
        self.flags = flags
        self.io_seq = 0  # bumped by every I/O call: poll tells fresh readiness from stale

    def os_fd(self) -> int | None:
        """The host descriptor to poll for readiness, or None when always ready."""
        return None

    def blocks_host(self) -> bool:
        """Whether an I/O call could block the host thread (see ``OsFile``)."""
        return False

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
        return sum(len(b) for b in bufs)


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
    """stdout/stderr delivered to a Python callable, one call per guest write."""

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        super().__init__()
        self._sink = sink

    def writev(self, bufs: Buffers) -> int:
        data = b"".join(bufs)
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
        self.tail += b"".join(bufs)[:n]
        del self.tail[: -self.LIMIT]
        return n

    def readv(self, bufs: Buffers) -> int:
        return self.inner.readv(bufs)

    def os_fd(self) -> int | None:
        return self.inner.os_fd()

    def blocks_host(self) -> bool:
        return self.inner.blocks_host()

    def set_flags(self, flags: int) -> None:
        self.flags = flags
        self.inner.set_flags(flags)

    def stat(self) -> os.stat_result | None:
        return self.inner.stat()

    def close(self) -> None:
        self.inner.close()


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
            if self.flags & FDFLAG_APPEND:
                os.lseek(self.fd, 0, os.SEEK_END)
            return os.writev(self.fd, bufs)
        except OSError as exc:
            raise from_os(exc) from None

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


class Directory(OsFile):
    """An open directory; ``preopen`` is the guest name when the host granted it."""

    filetype = Filetype.DIRECTORY

    def __init__(self, fd: int, rights: int, inheriting: int, preopen: str | None = None) -> None:
        super().__init__(fd, rights, inheriting)
        self.preopen = preopen
        self.listing: list[tuple[str, int, Filetype]] = []

    @classmethod
    def open_preopen(cls, host_path: str, guest_path: str, read_only: bool) -> Directory:
        fd = os.open(host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        rights = READ_ONLY_DIR_RIGHTS if read_only else DIR_RIGHTS
        inheriting = rights | (FILE_RIGHTS & ~_WRITE_RIGHTS if read_only else FILE_RIGHTS)
        return cls(fd, rights, inheriting, guest_path)

    def readv(self, bufs: Buffers) -> int:
        raise WasiError(Errno.ISDIR)

    def writev(self, bufs: Buffers) -> int:
        raise WasiError(Errno.ISDIR)

    def read_listing(self) -> list[tuple[str, int, Filetype]]:
        """A fresh snapshot of (name, inode, type) with ``.`` and ``..`` first."""
        st = os.fstat(self.fd)
        entries = [(".", st.st_ino, Filetype.DIRECTORY), ("..", 0, Filetype.DIRECTORY)]
        with os.scandir(self.fd) as it:
            for entry in it:
                entries.append((entry.name, entry.inode(), filetype_of(entry.stat(follow_symlinks=False).st_mode)))
        self.listing = entries
        return entries


_WRITE_RIGHTS = (
    Rights.FD_WRITE
    | Rights.FD_ALLOCATE
    | Rights.FD_FILESTAT_SET_SIZE
    | Rights.FD_FILESTAT_SET_TIMES
    | Rights.FD_DATASYNC
    | Rights.PATH_CREATE_DIRECTORY
    | Rights.PATH_CREATE_FILE
    | Rights.PATH_LINK_TARGET
    | Rights.PATH_RENAME_SOURCE
    | Rights.PATH_RENAME_TARGET
    | Rights.PATH_FILESTAT_SET_SIZE
    | Rights.PATH_FILESTAT_SET_TIMES
    | Rights.PATH_SYMLINK
    | Rights.PATH_REMOVE_DIRECTORY
    | Rights.PATH_UNLINK_FILE
)


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
    """Maps guest descriptor numbers to descriptors; lowest free number first."""

    def __init__(self) -> None:
        self._fds: dict[int, Descriptor] = {}

    def add(self, desc: Descriptor) -> int:
        fd = 0
        while fd in self._fds:
            fd += 1
        self._fds[fd] = desc
        return fd

    def get(self, fd: int, rights: int = 0) -> Descriptor:
        """The descriptor, after checking it holds ``rights`` (``NOTCAPABLE`` if not)."""
        desc = self._fds.get(fd)
        if desc is None:
            raise WasiError(Errno.BADF)
        if rights & ~desc.rights:
            raise WasiError(Errno.NOTCAPABLE)
        return desc

    def directory(self, fd: int, rights: int) -> Directory:
        desc = self.get(fd, rights)
        if not isinstance(desc, Directory):
            raise WasiError(Errno.NOTDIR)
        return desc

    def close(self, fd: int) -> None:
        desc = self._fds.pop(fd, None)
        if desc is None:
            raise WasiError(Errno.BADF)
        desc.close()

    def renumber(self, fd: int, to: int) -> None:
        if fd not in self._fds or to not in self._fds:
            raise WasiError(Errno.BADF)
        if fd != to:
            self._fds.pop(to).close()
            self._fds[to] = self._fds.pop(fd)

    def items(self) -> list[tuple[int, Descriptor]]:
        return list(self._fds.items())

    def close_all(self) -> None:
        """Release every host resource the guest still holds."""
        for desc in self._fds.values():
            desc.close()
        self._fds.clear()
