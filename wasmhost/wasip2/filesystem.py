"""wasi:filesystem 0.2 over the host's preopens, under the same policy as preview1: paths are
resolved by ``wasi.fs.resolve`` (never leaving the preopen), and a ``read_only`` preopen refuses
every change with ``read-only``. Regular files are read and written inline (the OS has no
readiness for them). Descriptor operations not provided here (links, renames, times, sizes,
advice, syncs) return ``unsupported``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from .._native.component import Err, Ok
from ..wasi.abi import Errno, WasiError, from_os
from ..wasi.fs import resolve
from .context import Wasi
from .streams import InputStream, OutputStream, StreamClosed, StreamFailed

TYPES = "wasi:filesystem/types@0.2.0"
PREOPENS = "wasi:filesystem/preopens@0.2.0"
RESOURCES = [(TYPES, "descriptor"), (TYPES, "directory-entry-stream")]
#: The error case of descriptor operations wasmhost does not provide.
REFUSAL = "unsupported"
_READ_ONLY = "read-only"
#: Most bytes one read returns (a read may return fewer than asked): a guest's length is a u64.
_MOST_READ = 1 << 20
#: The largest file offset (off_t); the guest's offsets are u64.
_MAX_OFFSET = (1 << 63) - 1

#: preview1 errno -> wasi:filesystem error-code (same meaning, new names).
_CODES = {
    Errno.ACCES: "access", Errno.AGAIN: "would-block", Errno.ALREADY: "already", Errno.BADF: "bad-descriptor",
    Errno.BUSY: "busy", Errno.DEADLK: "deadlock", Errno.DQUOT: "quota", Errno.EXIST: "exist",
    Errno.FBIG: "file-too-large", Errno.ILSEQ: "illegal-byte-sequence", Errno.INPROGRESS: "in-progress",
    Errno.INTR: "interrupted", Errno.INVAL: "invalid", Errno.IO: "io", Errno.ISDIR: "is-directory",
    Errno.LOOP: "loop", Errno.MLINK: "too-many-links", Errno.MSGSIZE: "message-size",
    Errno.NAMETOOLONG: "name-too-long", Errno.NODEV: "no-device", Errno.NOENT: "no-entry", Errno.NOLCK: "no-lock",
    Errno.NOMEM: "insufficient-memory", Errno.NOSPC: "insufficient-space", Errno.NOTDIR: "not-directory",
    Errno.NOTEMPTY: "not-empty", Errno.NOTRECOVERABLE: "not-recoverable", Errno.NOTSUP: "unsupported",
    Errno.NOTTY: "no-tty", Errno.NXIO: "no-such-device", Errno.OVERFLOW: "overflow", Errno.PERM: "not-permitted",
    Errno.PIPE: "pipe", Errno.ROFS: "read-only", Errno.SPIPE: "invalid-seek", Errno.TXTBSY: "text-file-busy",
    Errno.XDEV: "cross-device", Errno.NOTCAPABLE: "not-permitted",
}  # fmt: skip
_TYPES = {
    stat.S_IFBLK: "block-device", stat.S_IFCHR: "character-device", stat.S_IFDIR: "directory",
    stat.S_IFIFO: "fifo", stat.S_IFLNK: "symbolic-link", stat.S_IFREG: "regular-file", stat.S_IFSOCK: "socket",
}  # fmt: skip


class FsError(Exception):
    """A filesystem call failed with this ``error-code`` case."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _code(exc: BaseException) -> str:
    if isinstance(exc, FsError):
        return exc.code
    if isinstance(exc, WasiError):
        return _CODES.get(exc.errno, "io")
    if isinstance(exc, OSError):
        return _CODES.get(from_os(exc).errno, "io")
    raise exc


def _result(op: Callable[[], Any]) -> Ok | Err:
    """Run a filesystem operation: its value, or the error-code it failed with."""
    try:
        return Ok(op())
    except (FsError, WasiError, OSError) as exc:
        return Err(_code(exc))


class Descriptor:
    """An open file or directory, and whether the preopen it came from is read-only."""

    def __init__(self, fd: int, read_only: bool, writable: bool = False) -> None:
        self.fd = fd
        self.read_only = read_only
        self.writable = writable and not read_only
        self.is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)

    def directory(self) -> int:
        if not self.is_dir:
            raise FsError("not-directory")
        return self.fd

    def changeable(self) -> None:
        if self.read_only:
            raise FsError(_READ_ONLY)

    def at(self, path: str, follow: bool) -> AbstractContextManager[tuple[int, str]]:
        """``(dir_fd, name)`` for ``path`` under this directory, never outside it."""
        if "\0" in path:
            raise FsError("invalid")  # no host call takes a NUL (preview1 says INVAL too)
        return resolve(self.directory(), path, follow)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _offset(offset: int) -> int:
    if offset > _MAX_OFFSET:
        raise FsError("invalid")
    return offset


class FileInput(InputStream):
    def __init__(self, descriptor: Descriptor, offset: int) -> None:
        self.descriptor = descriptor
        self.offset = offset

    def read(self, size: int) -> bytes:
        try:
            data = os.pread(self.descriptor.fd, min(size, _MOST_READ), self.offset)
        except OSError as exc:
            raise StreamFailed(_code(exc)) from None
        if not data and size:
            raise StreamClosed
        self.offset += len(data)
        return data


class FileOutput(OutputStream):
    def __init__(self, descriptor: Descriptor, offset: int | None) -> None:
        self.descriptor = descriptor
        self.offset = offset  # None: append

    def check_write(self) -> int:
        return 1 << 20

    def write(self, data: bytes) -> None:
        try:
            if self.offset is None:
                os.lseek(self.descriptor.fd, 0, os.SEEK_END)
                os.write(self.descriptor.fd, data)
            else:
                self.offset += os.pwrite(self.descriptor.fd, data, self.offset)
        except OSError as exc:
            raise StreamFailed(_code(exc)) from None


def _utf8(name: str) -> str:
    """A host name as a WIT string: a name that is not UTF-8 (decoded with surrogates) cannot be
    one, and is ``illegal-byte-sequence``, as under Wasmtime."""
    try:
        name.encode()
    except UnicodeEncodeError:
        raise FsError("illegal-byte-sequence") from None
    return name


class DirectoryEntries:
    def __init__(self, entries: Iterator[os.DirEntry[str]]) -> None:
        self._entries = entries

    def next(self) -> tuple[str, str] | None:
        for entry in self._entries:
            return _TYPES.get(stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode), "unknown"), _utf8(entry.name)
        return None

    def close(self) -> None:
        close = getattr(self._entries, "close", None)
        if close is not None:
            close()


def _stat(st: os.stat_result) -> tuple[Any, ...]:
    def when(ns: int) -> tuple[int, int]:
        return divmod(ns, 1_000_000_000)

    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
    return kind, st.st_nlink, st.st_size, when(st.st_atime_ns), when(st.st_mtime_ns), when(st.st_ctime_ns)


def _follows(path_flags: frozenset[str]) -> bool:
    return "symlink-follow" in path_flags


# --- functions ----------------------------------------------------------------------------


def get_directories(wasi: Wasi) -> list[tuple[int, str]]:
    found = []
    for preopen in wasi.config.preopens:
        fd = os.open(preopen.host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        found.append((wasi.table.push(Descriptor(fd, preopen.read_only)), preopen.guest))
    return found


def _descriptor(wasi: Wasi, rep: int) -> Descriptor:
    return wasi.table.get(rep, Descriptor)


def open_at(wasi: Wasi, rep: int, path_flags: frozenset[str], path: str, open_flags: frozenset[str],
            flags: frozenset[str]) -> Ok | Err:  # fmt: skip
    parent = _descriptor(wasi, rep)

    def run() -> int:
        writes = "write" in flags or "mutate-directory" in flags or bool(open_flags & {"create", "truncate"})
        if writes:
            parent.changeable()
        mode = os.O_RDWR if "write" in flags and "read" in flags else os.O_WRONLY if "write" in flags else os.O_RDONLY
        mode |= os.O_CLOEXEC
        mode |= os.O_CREAT if "create" in open_flags else 0
        mode |= os.O_EXCL if "exclusive" in open_flags else 0
        mode |= os.O_TRUNC if "truncate" in open_flags else 0
        mode |= os.O_DIRECTORY if "directory" in open_flags else 0
        follow = _follows(path_flags)
        mode |= 0 if follow else os.O_NOFOLLOW
        with parent.at(path, follow) as (dir_fd, name):
            fd = os.open(name, mode, 0o666, dir_fd=dir_fd)
        return wasi.table.push(Descriptor(fd, parent.read_only, "write" in flags))

    return _result(run)


def read_via_stream(wasi: Wasi, rep: int, offset: int) -> Ok | Err:
    """A stream at ``offset``; the descriptor stays open while it lives (as under Wasmtime)."""
    descriptor = _descriptor(wasi, rep)
    return _result(lambda: wasi.table.push(FileInput(descriptor, _offset(offset)), holds=descriptor))


def _writer(wasi: Wasi, rep: int, offset: int | None) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)

    def run() -> int:
        descriptor.changeable()
        stream = FileOutput(descriptor, offset if offset is None else _offset(offset))
        return wasi.table.push(stream, holds=descriptor)

    return _result(run)


def write_via_stream(wasi: Wasi, rep: int, offset: int) -> Ok | Err:
    return _writer(wasi, rep, offset)


def append_via_stream(wasi: Wasi, rep: int) -> Ok | Err:
    return _writer(wasi, rep, None)


def read(wasi: Wasi, rep: int, length: int, offset: int) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)

    def run() -> tuple[bytes, bool]:
        asked = min(length, _MOST_READ)
        data = os.pread(descriptor.fd, asked, _offset(offset))
        return data, len(data) < asked

    return _result(run)


def write(wasi: Wasi, rep: int, data: bytes, offset: int) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)

    def run() -> int:
        descriptor.changeable()
        return os.pwrite(descriptor.fd, data, _offset(offset))

    return _result(run)


def stat_(wasi: Wasi, rep: int) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)
    return _result(lambda: _stat(os.fstat(descriptor.fd)))


def stat_at(wasi: Wasi, rep: int, path_flags: frozenset[str], path: str) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)

    def run() -> tuple[Any, ...]:
        follow = _follows(path_flags)
        with descriptor.at(path, follow) as (dir_fd, name):
            return _stat(os.stat(name, dir_fd=dir_fd, follow_symlinks=follow))

    return _result(run)


def get_type(wasi: Wasi, rep: int) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)
    return _result(lambda: _stat(os.fstat(descriptor.fd))[0])


def get_flags(wasi: Wasi, rep: int) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)
    flags = {"read"} | ({"write"} if descriptor.writable else set())
    if descriptor.is_dir and not descriptor.read_only:
        flags.add("mutate-directory")
    return Ok(frozenset(flags))


def read_directory(wasi: Wasi, rep: int) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)
    return _result(lambda: wasi.table.push(DirectoryEntries(os.scandir(descriptor.directory()))))


def read_directory_entry(wasi: Wasi, rep: int) -> Ok | Err:
    return _result(wasi.table.get(rep, DirectoryEntries).next)


def _change_at(wasi: Wasi, rep: int, path: str, change: Callable[[str, int], None]) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)

    def run() -> None:
        descriptor.changeable()
        with descriptor.at(path, False) as (dir_fd, name):
            change(name, dir_fd)

    return _result(run)


def create_directory_at(wasi: Wasi, rep: int, path: str) -> Ok | Err:
    return _change_at(wasi, rep, path, lambda name, dir_fd: os.mkdir(name, dir_fd=dir_fd))


def remove_directory_at(wasi: Wasi, rep: int, path: str) -> Ok | Err:
    return _change_at(wasi, rep, path, lambda name, dir_fd: os.rmdir(name, dir_fd=dir_fd))


def unlink_file_at(wasi: Wasi, rep: int, path: str) -> Ok | Err:
    return _change_at(wasi, rep, path, lambda name, dir_fd: os.unlink(name, dir_fd=dir_fd))


def _hash(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev & (2**64 - 1), st.st_ino & (2**64 - 1)


def metadata_hash(wasi: Wasi, rep: int) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)
    return _result(lambda: _hash(os.fstat(descriptor.fd)))


def metadata_hash_at(wasi: Wasi, rep: int, path_flags: frozenset[str], path: str) -> Ok | Err:
    descriptor = _descriptor(wasi, rep)

    def run() -> tuple[int, int]:
        follow = _follows(path_flags)
        with descriptor.at(path, follow) as (dir_fd, name):
            return _hash(os.stat(name, dir_fd=dir_fd, follow_symlinks=follow))

    return _result(run)


def is_same_object(wasi: Wasi, rep: int, other: int) -> bool:
    mine, theirs = os.fstat(_descriptor(wasi, rep).fd), os.fstat(_descriptor(wasi, other).fd)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def filesystem_error_code(_wasi: Wasi, _error: int) -> None:
    return None


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    (PREOPENS, "get-directories"): get_directories,
    (TYPES, "filesystem-error-code"): filesystem_error_code,
    (TYPES, "[method]descriptor.open-at"): open_at,
    (TYPES, "[method]descriptor.read-via-stream"): read_via_stream,
    (TYPES, "[method]descriptor.write-via-stream"): write_via_stream,
    (TYPES, "[method]descriptor.append-via-stream"): append_via_stream,
    (TYPES, "[method]descriptor.read"): read,
    (TYPES, "[method]descriptor.write"): write,
    (TYPES, "[method]descriptor.stat"): stat_,
    (TYPES, "[method]descriptor.stat-at"): stat_at,
    (TYPES, "[method]descriptor.get-type"): get_type,
    (TYPES, "[method]descriptor.get-flags"): get_flags,
    (TYPES, "[method]descriptor.read-directory"): read_directory,
    (TYPES, "[method]directory-entry-stream.read-directory-entry"): read_directory_entry,
    (TYPES, "[method]descriptor.create-directory-at"): create_directory_at,
    (TYPES, "[method]descriptor.remove-directory-at"): remove_directory_at,
    (TYPES, "[method]descriptor.unlink-file-at"): unlink_file_at,
    (TYPES, "[method]descriptor.metadata-hash"): metadata_hash,
    (TYPES, "[method]descriptor.metadata-hash-at"): metadata_hash_at,
    (TYPES, "[method]descriptor.is-same-object"): is_same_object,
}
