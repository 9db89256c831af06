"""WASI preview1 numbers and layouts: errno, rights, file types, flags, struct formats.

Pure data, no I/O: every rule here is checked by unit tests against the preview1 witx.
"""

from __future__ import annotations

import enum
import errno as _os_errno
import struct


class Errno(enum.IntEnum):
    SUCCESS = 0
    TOOBIG = 1
    ACCES = 2
    ADDRINUSE = 3
    ADDRNOTAVAIL = 4
    AFNOSUPPORT = 5
    AGAIN = 6
    ALREADY = 7
    BADF = 8
    BADMSG = 9
    BUSY = 10
    CANCELED = 11
    CHILD = 12
    CONNABORTED = 13
    CONNREFUSED = 14
    CONNRESET = 15
    DEADLK = 16
    DESTADDRREQ = 17
    DOM = 18
    DQUOT = 19
    EXIST = 20
    FAULT = 21
    FBIG = 22
    HOSTUNREACH = 23
    IDRM = 24
    ILSEQ = 25
    INPROGRESS = 26
    INTR = 27
    INVAL = 28
    IO = 29
    ISCONN = 30
    ISDIR = 31
    LOOP = 32
    MFILE = 33
    MLINK = 34
    MSGSIZE = 35
    MULTIHOP = 36
    NAMETOOLONG = 37
    NETDOWN = 38
    NETRESET = 39
    NETUNREACH = 40
    NFILE = 41
    NOBUFS = 42
    NODEV = 43
    NOENT = 44
    NOEXEC = 45
    NOLCK = 46
    NOLINK = 47
    NOMEM = 48
    NOMSG = 49
    NOPROTOOPT = 50
    NOSPC = 51
    NOSYS = 52
    NOTCONN = 53
    NOTDIR = 54
    NOTEMPTY = 55
    NOTRECOVERABLE = 56
    NOTSOCK = 57
    NOTSUP = 58
    NOTTY = 59
    NXIO = 60
    OVERFLOW = 61
    OWNERDEAD = 62
    PERM = 63
    PIPE = 64
    PROTO = 65
    PROTONOSUPPORT = 66
    PROTOTYPE = 67
    RANGE = 68
    ROFS = 69
    SPIPE = 70
    SRCH = 71
    STALE = 72
    TIMEDOUT = 73
    TXTBSY = 74
    XDEV = 75
    NOTCAPABLE = 76
    # WasmEdge's getaddrinfo extensions.
    AIADDRFAMILY = 77
    AIAGAIN = 78
    AIBADFLAG = 79
    AIFAIL = 80
    AIFAMILY = 81
    AIMEMORY = 82
    AINODATA = 83
    AINONAME = 84
    AISERVICE = 85
    AISOCKTYPE = 86
    AISYSTEM = 87


class WasiError(Exception):
    """A host function's failure, returned to the guest as an errno (never a trap)."""

    def __init__(self, errno: Errno) -> None:
        super().__init__(errno)
        self.errno = errno

    def __str__(self) -> str:
        return self.errno.name  # named only when shown: most are results, raised and caught


# Host OS errno -> WASI errno, name for name (the numbers differ between platforms).
_FROM_OS: dict[int, Errno] = {
    getattr(_os_errno, "E" + e.name): e
    for e in Errno
    if not e.name.startswith("AI") and hasattr(_os_errno, "E" + e.name)
}
_FROM_OS.update(
    {
        _os_errno.E2BIG: Errno.TOOBIG,
        _os_errno.EWOULDBLOCK: Errno.AGAIN,
        _os_errno.EOPNOTSUPP: Errno.NOTSUP,
        _os_errno.ECANCELED: Errno.CANCELED,
    }
)


def from_os(exc: OSError) -> WasiError:
    """Translate an ``OSError`` into the WASI errno with the same name (``IO`` if none)."""
    return WasiError(errno_from_os(exc.errno or 0))


def errno_from_os(code: int) -> Errno:
    return _FROM_OS.get(code, Errno.IO)


class Filetype(enum.IntEnum):
    UNKNOWN = 0
    BLOCK_DEVICE = 1
    CHARACTER_DEVICE = 2
    DIRECTORY = 3
    REGULAR_FILE = 4
    SOCKET_DGRAM = 5
    SOCKET_STREAM = 6
    SYMBOLIC_LINK = 7


class Clock(enum.IntEnum):
    REALTIME = 0
    MONOTONIC = 1
    PROCESS_CPUTIME_ID = 2
    THREAD_CPUTIME_ID = 3


class Whence(enum.IntEnum):
    SET = 0
    CUR = 1
    END = 2


class Advice(enum.IntEnum):
    NORMAL = 0
    SEQUENTIAL = 1
    RANDOM = 2
    WILLNEED = 3
    DONTNEED = 4
    NOREUSE = 5


class EventType(enum.IntEnum):
    CLOCK = 0
    FD_READ = 1
    FD_WRITE = 2


# fdflags
FDFLAG_APPEND = 1
FDFLAG_DSYNC = 2
FDFLAG_NONBLOCK = 4
FDFLAG_RSYNC = 8
FDFLAG_SYNC = 16
FDFLAGS_ALL = 31

# oflags
OFLAG_CREAT = 1
OFLAG_DIRECTORY = 2
OFLAG_EXCL = 4
OFLAG_TRUNC = 8

# lookupflags
LOOKUP_SYMLINK_FOLLOW = 1

# fstflags
FST_ATIM = 1
FST_ATIM_NOW = 2
FST_MTIM = 4
FST_MTIM_NOW = 8

# subclockflags / eventrwflags
SUBSCRIPTION_CLOCK_ABSTIME = 1
EVENT_FD_READWRITE_HANGUP = 1


class Rights:
    """Rights bits, as plain ints: they are tested on every host call, and ``enum.IntFlag``
    arithmetic costs microseconds per operation."""

    FD_DATASYNC = 1 << 0
    FD_READ = 1 << 1
    FD_SEEK = 1 << 2
    FD_FDSTAT_SET_FLAGS = 1 << 3
    FD_SYNC = 1 << 4
    FD_TELL = 1 << 5
    FD_WRITE = 1 << 6
    FD_ADVISE = 1 << 7
    FD_ALLOCATE = 1 << 8
    PATH_CREATE_DIRECTORY = 1 << 9
    PATH_CREATE_FILE = 1 << 10
    PATH_LINK_SOURCE = 1 << 11
    PATH_LINK_TARGET = 1 << 12
    PATH_OPEN = 1 << 13
    FD_READDIR = 1 << 14
    PATH_READLINK = 1 << 15
    PATH_RENAME_SOURCE = 1 << 16
    PATH_RENAME_TARGET = 1 << 17
    PATH_FILESTAT_GET = 1 << 18
    PATH_FILESTAT_SET_SIZE = 1 << 19
    PATH_FILESTAT_SET_TIMES = 1 << 20
    FD_FILESTAT_GET = 1 << 21
    FD_FILESTAT_SET_SIZE = 1 << 22
    FD_FILESTAT_SET_TIMES = 1 << 23
    PATH_SYMLINK = 1 << 24
    PATH_REMOVE_DIRECTORY = 1 << 25
    PATH_UNLINK_FILE = 1 << 26
    POLL_FD_READWRITE = 1 << 27
    SOCK_SHUTDOWN = 1 << 28
    SOCK_ACCEPT = 1 << 29


FILE_RIGHTS = (
    Rights.FD_DATASYNC
    | Rights.FD_READ
    | Rights.FD_SEEK
    | Rights.FD_FDSTAT_SET_FLAGS
    | Rights.FD_SYNC
    | Rights.FD_TELL
    | Rights.FD_WRITE
    | Rights.FD_ADVISE
    | Rights.FD_ALLOCATE
    | Rights.FD_FILESTAT_GET
    | Rights.FD_FILESTAT_SET_SIZE
    | Rights.FD_FILESTAT_SET_TIMES
    | Rights.POLL_FD_READWRITE
)
DIR_RIGHTS = (
    Rights.FD_FDSTAT_SET_FLAGS
    | Rights.FD_SYNC
    | Rights.FD_ADVISE
    | Rights.PATH_CREATE_DIRECTORY
    | Rights.PATH_CREATE_FILE
    | Rights.PATH_LINK_SOURCE
    | Rights.PATH_LINK_TARGET
    | Rights.PATH_OPEN
    | Rights.FD_READDIR
    | Rights.PATH_READLINK
    | Rights.PATH_RENAME_SOURCE
    | Rights.PATH_RENAME_TARGET
    | Rights.PATH_FILESTAT_GET
    | Rights.PATH_FILESTAT_SET_SIZE
    | Rights.PATH_FILESTAT_SET_TIMES
    | Rights.FD_FILESTAT_GET
    | Rights.FD_FILESTAT_SET_TIMES
    | Rights.PATH_SYMLINK
    | Rights.PATH_REMOVE_DIRECTORY
    | Rights.PATH_UNLINK_FILE
    | Rights.POLL_FD_READWRITE
)
# A read-only preopen, and everything opened under it, can look but not change: no right to
# write, resize or touch a file, and none that names a file for a change made elsewhere
# (a hard link's or a rename's source would make it writable through another directory).
READ_ONLY_DIR_RIGHTS = (
    Rights.FD_FDSTAT_SET_FLAGS
    | Rights.FD_SYNC
    | Rights.FD_ADVISE
    | Rights.PATH_OPEN
    | Rights.FD_READDIR
    | Rights.PATH_READLINK
    | Rights.PATH_FILESTAT_GET
    | Rights.FD_FILESTAT_GET
    | Rights.POLL_FD_READWRITE
)
READ_ONLY_FILE_RIGHTS = (
    Rights.FD_READ
    | Rights.FD_SEEK
    | Rights.FD_FDSTAT_SET_FLAGS
    | Rights.FD_SYNC
    | Rights.FD_TELL
    | Rights.FD_ADVISE
    | Rights.FD_FILESTAT_GET
    | Rights.POLL_FD_READWRITE
)
STDIO_RIGHTS = (
    Rights.FD_READ
    | Rights.FD_WRITE
    | Rights.FD_FDSTAT_SET_FLAGS
    | Rights.POLL_FD_READWRITE
    | Rights.FD_FILESTAT_GET
    | Rights.FD_SYNC
    | Rights.FD_DATASYNC
)

# Struct layouts (little-endian, wasm32).
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
IOVEC = struct.Struct("<II")  # buf, buf_len
FDSTAT = struct.Struct("<BxHxxxxQQ")  # filetype, fs_flags, rights_base, rights_inheriting (24 bytes)
FILESTAT = struct.Struct("<QQB7xQQQQQ")  # dev, ino, filetype, nlink, size, atim, mtim, ctim (64)
PRESTAT = struct.Struct("<BxxxI")  # tag (0 = dir), name length
DIRENT = struct.Struct("<QQIBxxx")  # d_next, d_ino, d_namlen, d_type (24 bytes)
SUBSCRIPTION = struct.Struct("<QB7x32s")  # userdata, tag, union body (48 bytes)
SUB_CLOCK = struct.Struct("<IxxxxQQH")  # id, timeout, precision, flags
SUB_FD = struct.Struct("<I")
EVENT = struct.Struct("<QHBxxxxxQH6x")  # userdata, error, type, nbytes, flags (32 bytes)

MAX_IOVECS = 1024
