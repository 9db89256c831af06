"""The ``wasi_snapshot_preview1`` functions, implemented by wasmhost over one fd table.

Each method is named after the WASI function and takes its integer arguments; it returns
None on success or raises ``WasiError``. ``FUNCTIONS`` gives the wasm types that the
linker registers them with.
"""

from __future__ import annotations

import asyncio
import functools
import os
import select
import time
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from .._native import sockio
from .._native.sockio import Front, PollState
from . import fs, poll
from .abi import (
    DIRENT,
    FDFLAG_APPEND,
    FDFLAG_DSYNC,
    FDFLAG_NONBLOCK,
    FDFLAG_RSYNC,
    FDFLAG_SYNC,
    FDFLAGS_ALL,
    FDSTAT,
    FILESTAT,
    FST_ATIM,
    FST_ATIM_NOW,
    FST_MTIM,
    FST_MTIM_NOW,
    LOOKUP_SYMLINK_FOLLOW,
    OFLAG_CREAT,
    OFLAG_DIRECTORY,
    OFLAG_EXCL,
    OFLAG_TRUNC,
    PRESTAT,
    SUBSCRIPTION,
    Advice,
    Clock,
    Errno,
    EventType,
    Filetype,
    Rights,
    WasiError,
    Whence,
    from_os,
)
from .context import ProcExit, WasiContext
from .fdtable import Descriptor, Directory, OsFile, filetype_of
from .linking import Table

R = Rights
_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
_CLOCKS = {
    Clock.REALTIME: (time.time_ns, time.CLOCK_REALTIME),
    Clock.MONOTONIC: (time.monotonic_ns, time.CLOCK_MONOTONIC),
    Clock.PROCESS_CPUTIME_ID: (time.process_time_ns, time.CLOCK_PROCESS_CPUTIME_ID),
    Clock.THREAD_CPUTIME_ID: (time.thread_time_ns, time.CLOCK_THREAD_CPUTIME_ID),
}
_ADVICE = {
    Advice.NORMAL: os.POSIX_FADV_NORMAL,
    Advice.SEQUENTIAL: os.POSIX_FADV_SEQUENTIAL,
    Advice.RANDOM: os.POSIX_FADV_RANDOM,
    Advice.WILLNEED: os.POSIX_FADV_WILLNEED,
    Advice.DONTNEED: os.POSIX_FADV_DONTNEED,
    Advice.NOREUSE: os.POSIX_FADV_NOREUSE,
}
_READ_RIGHTS = R.FD_READ | R.FD_READDIR
_FIRST_HOLD_NS = 1_000_000  # stale readiness is first held back 1 ms, doubling while idle
# Decoded subscription arrays and poll objects kept for reuse: at most _KEPT of them, holding at
# most _KEPT_ITEMS subscriptions or descriptors in all (a few hundred kB). A server on 50
# keep-alive connections passes the same 51 subscriptions each time, and reusing them is 5-30%
# more requests per second (benchmarks/README.md); one with thousands of connections cannot
# fill the cache with arrays it will not repeat.
_KEPT, _KEPT_ITEMS = 64, 1024
# Rights that mean "open the file for writing" (not the directory-only path rights).
_FILE_WRITE_RIGHTS = R.FD_WRITE | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE | R.FD_DATASYNC

#: name -> wasm parameter types ("i" i32, "I" i64); every function returns an i32 errno.
_SIGNATURES: dict[str, str] = {
    "args_get": "ii",
    "args_sizes_get": "ii",
    "environ_get": "ii",
    "environ_sizes_get": "ii",
    "clock_res_get": "ii",
    "clock_time_get": "iIi",
    "fd_advise": "iIIi",
    "fd_allocate": "iII",
    "fd_close": "i",
    "fd_datasync": "i",
    "fd_fdstat_get": "ii",
    "fd_fdstat_set_flags": "ii",
    "fd_fdstat_set_rights": "iII",
    "fd_filestat_get": "ii",
    "fd_filestat_set_size": "iI",
    "fd_filestat_set_times": "iIIi",
    "fd_pread": "iiiIi",
    "fd_prestat_get": "ii",
    "fd_prestat_dir_name": "iii",
    "fd_pwrite": "iiiIi",
    "fd_read": "iiii",
    "fd_readdir": "iiiIi",
    "fd_renumber": "ii",
    "fd_seek": "iIii",
    "fd_sync": "i",
    "fd_tell": "ii",
    "fd_write": "iiii",
    "path_create_directory": "iii",
    "path_filestat_get": "iiiii",
    "path_filestat_set_times": "iiiiIIi",
    "path_link": "iiiiiii",
    "path_open": "iiiiiIIii",
    "path_readlink": "iiiiii",
    "path_remove_directory": "iii",
    "path_rename": "iiiiii",
    "path_symlink": "iiiii",
    "path_unlink_file": "iii",
    "poll_oneoff": "iiii",
    "epoll_oneoff": "iiii",
    "proc_exit": "i",
    "proc_raise": "i",
    "sched_yield": "",
    "random_get": "ii",
}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _offset(value: int) -> int:
    """A u64 file offset or size as the kernel's ``off_t``: one that would be negative is
    ``INVAL``, as Linux's pread, pwrite, ftruncate and fallocate say (and preadv2 would
    read -1 as "the current position")."""
    if value >= 1 << 63:
        raise WasiError(Errno.INVAL)
    return value


FUNCTIONS = [(name, params, name) for name, params in _SIGNATURES.items()]


class Preview1:
    """The standard functions; ``proc_exit`` raises ``ProcExit`` to end the guest."""

    def __init__(self, ctx: WasiContext, idle_backoff: float = 0.25) -> None:
        self.ctx = ctx
        self.fds = ctx.fds
        self._max_idle_ns = int(idle_backoff * 1e9)
        #: The current hold of stale readiness, shared with C's poll (which resets it).
        self._poll = PollState(idle_ns=0, backoff=self._max_idle_ns > 0)
        #: Decoded subscription arrays without clocks, by their bytes: a server passes the
        #: same few arrays over and over.
        self._decoded: _Kept[bytes, list[poll.Subscription]] = _Kept()
        #: Poll objects by the fd/mask pairs registered with them, for the same reason.
        self._pollers: _Kept[tuple[tuple[int, int], ...], Any] = _Kept()

    def fronted(self, table: Table) -> Table:
        """``table`` with ``poll_oneoff``, the fdstat functions and ``fd_close`` behind their C
        fast paths (stream sockets only): C first, Python when it declines (``_native.sockio``)."""
        fronts: dict[object, Front] = {
            self.poll_oneoff: Front(sockio.POLL, self.poll_oneoff, self.fds.native, self._poll),
            self.fd_fdstat_get: Front(sockio.FDSTAT_GET, self.fd_fdstat_get, self.fds.native),
            self.fd_fdstat_set_flags: Front(sockio.FDSTAT_SET_FLAGS, self.fd_fdstat_set_flags, self.fds.native),
            self.fd_close: Front(sockio.CLOSE, self.fd_close, self.fds.native),
        }
        return {key: fronts.get(func, func) for key, func in table.items()}

    # --- args, environment, clocks, random, process -------------------------------------

    def _strings_get(self, items: list[bytes], ptrs: int, buf: int) -> None:
        mem = self.ctx.memory
        for item in items:
            mem.set_u32(ptrs, buf)
            mem.write(buf, item + b"\0")
            ptrs += 4
            buf += len(item) + 1

    def _strings_sizes(self, items: list[bytes], count_ptr: int, size_ptr: int) -> None:
        self.ctx.memory.set_u32(count_ptr, len(items))
        self.ctx.memory.set_u32(size_ptr, sum(len(i) + 1 for i in items))

    def args_get(self, argv: int, buf: int) -> None:
        self._strings_get(self.ctx.args, argv, buf)

    def args_sizes_get(self, count: int, size: int) -> None:
        self._strings_sizes(self.ctx.args, count, size)

    def environ_get(self, environ: int, buf: int) -> None:
        self._strings_get(self.ctx.env, environ, buf)

    def environ_sizes_get(self, count: int, size: int) -> None:
        self._strings_sizes(self.ctx.env, count, size)

    def clock_res_get(self, clock: int, out: int) -> None:
        if clock not in _CLOCKS:
            raise WasiError(Errno.INVAL)
        res = time.clock_getres(_CLOCKS[Clock(clock)][1])
        self.ctx.memory.set_u64(out, max(1, int(res * 1e9)))

    def clock_time_get(self, clock: int, _precision: int, out: int) -> None:
        read = _CLOCKS.get(clock)  # type: ignore[call-overload]
        if read is None:
            raise WasiError(Errno.INVAL)
        self.ctx.memory.set_u64(out, read[0]())

    def random_get(self, buf: int, length: int) -> None:
        self.ctx.memory.check(buf, length)
        self.ctx.memory.write(buf, os.urandom(length))

    def proc_exit(self, code: int) -> None:
        raise ProcExit(code)

    def proc_raise(self, _sig: int) -> None:
        raise WasiError(Errno.NOSYS)

    async def sched_yield(self) -> None:
        """Let the loop run other guests and coroutines before this one goes on."""
        await asyncio.sleep(0)

    # --- descriptors ---------------------------------------------------------------------

    def fd_close(self, fd: int) -> None:
        self.fds.close(fd)

    def fd_renumber(self, fd: int, to: int) -> None:
        self.fds.renumber(fd, to)

    def fd_fdstat_get(self, fd: int, out: int) -> None:
        desc = self.fds.get(fd)
        self.ctx.memory.write(out, FDSTAT.pack(desc.filetype, desc.flags, desc.rights, desc.inheriting))

    def fd_fdstat_set_flags(self, fd: int, flags: int) -> None:
        if flags & ~FDFLAGS_ALL:
            raise WasiError(Errno.INVAL)
        self.fds.get(fd, R.FD_FDSTAT_SET_FLAGS).set_flags(flags)

    def fd_fdstat_set_rights(self, fd: int, base: int, inheriting: int) -> None:
        desc = self.fds.get(fd)
        if base & ~desc.rights or inheriting & ~desc.inheriting:
            raise WasiError(Errno.NOTCAPABLE)
        desc.rights, desc.inheriting = base, inheriting

    def fd_prestat_get(self, fd: int, out: int) -> None:
        desc = self.fds.get(fd)
        if not isinstance(desc, Directory) or desc.preopen is None:
            raise WasiError(Errno.BADF)
        self.ctx.memory.write(out, PRESTAT.pack(0, len(desc.preopen.encode())))

    def fd_prestat_dir_name(self, fd: int, buf: int, length: int) -> None:
        desc = self.fds.get(fd)
        if not isinstance(desc, Directory) or desc.preopen is None:
            raise WasiError(Errno.BADF)
        name = desc.preopen.encode()
        if length < len(name):
            raise WasiError(Errno.NAMETOOLONG)
        self.ctx.memory.write(buf, name)

    async def fd_read(self, fd: int, iovs: int, count: int, nread: int) -> None:
        desc = self.fds.get(fd, R.FD_READ)
        bufs = self.ctx.memory.iovecs(iovs, count)
        self.ctx.memory.check(nread, 4)
        self.ctx.memory.set_u32(nread, await self.ctx.blocking(desc, False, lambda: desc.readv(bufs)))

    async def fd_write(self, fd: int, iovs: int, count: int, nwritten: int) -> None:
        desc = self.fds.get(fd, R.FD_WRITE)
        bufs = self.ctx.memory.iovecs(iovs, count)
        self.ctx.memory.check(nwritten, 4)
        self.ctx.memory.set_u32(nwritten, await self.ctx.blocking(desc, True, lambda: desc.writev(bufs)))

    def _file(self, fd: int, rights: int) -> OsFile:
        desc = self.fds.get(fd, rights)
        if not isinstance(desc, OsFile):
            raise WasiError(Errno.SPIPE if rights & (R.FD_SEEK | R.FD_TELL) else Errno.BADF)
        if isinstance(desc, Directory) and rights & (R.FD_READ | R.FD_WRITE):
            raise WasiError(Errno.ISDIR)
        return desc

    def fd_pread(self, fd: int, iovs: int, count: int, offset: int, nread: int) -> None:
        desc = self._file(fd, R.FD_READ | R.FD_SEEK)
        bufs = self.ctx.memory.iovecs(iovs, count)
        self.ctx.memory.set_u32(nread, _os(os.preadv, desc.fd, bufs, _offset(offset)))

    def fd_pwrite(self, fd: int, iovs: int, count: int, offset: int, nwritten: int) -> None:
        desc = self._file(fd, R.FD_WRITE | R.FD_SEEK)
        bufs = self.ctx.memory.iovecs(iovs, count)
        self.ctx.memory.set_u32(nwritten, _os(os.pwritev, desc.fd, bufs, _offset(offset)))

    def fd_seek(self, fd: int, offset: int, whence: int, out: int) -> None:
        desc = self._file(fd, R.FD_SEEK if (offset, whence) != (0, Whence.CUR) else R.FD_TELL)
        if whence not in (Whence.SET, Whence.CUR, Whence.END):
            raise WasiError(Errno.INVAL)
        self.ctx.memory.check(out, 8)
        self.ctx.memory.set_u64(out, _os(os.lseek, desc.fd, _signed(offset), whence))

    def fd_tell(self, fd: int, out: int) -> None:
        desc = self._file(fd, R.FD_TELL)
        self.ctx.memory.set_u64(out, _os(os.lseek, desc.fd, 0, os.SEEK_CUR))

    def fd_sync(self, fd: int) -> None:
        _os(os.fsync, self._file(fd, R.FD_SYNC).fd)

    def fd_datasync(self, fd: int) -> None:
        _os(os.fdatasync, self._file(fd, R.FD_DATASYNC).fd)

    def fd_advise(self, fd: int, offset: int, length: int, advice: int) -> None:
        if advice not in _ADVICE:
            raise WasiError(Errno.INVAL)
        desc = self._file(fd, R.FD_ADVISE)
        _os(os.posix_fadvise, desc.fd, _signed(offset), _signed(length), _ADVICE[Advice(advice)])

    def fd_allocate(self, fd: int, offset: int, length: int) -> None:
        desc = self._file(fd, R.FD_ALLOCATE)
        end = _offset(offset) + _offset(length)
        if end >= 1 << 63:
            raise WasiError(Errno.FBIG)
        if end > _os(os.fstat, desc.fd).st_size:
            _os(os.ftruncate, desc.fd, end)

    def fd_filestat_get(self, fd: int, out: int) -> None:
        st = self.fds.get(fd, R.FD_FILESTAT_GET).stat()
        self.ctx.memory.write(
            out, _filestat(st) if st is not None else FILESTAT.pack(0, 0, Filetype.CHARACTER_DEVICE, 1, 0, 0, 0, 0)
        )

    def fd_filestat_set_size(self, fd: int, size: int) -> None:
        _os(os.ftruncate, self._file(fd, R.FD_FILESTAT_SET_SIZE).fd, _offset(size))

    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, flags: int) -> None:
        desc = self._file(fd, R.FD_FILESTAT_SET_TIMES)
        _os(os.utime, desc.fd, ns=_times(_os(os.fstat, desc.fd), atim, mtim, flags))

    def fd_readdir(self, fd: int, buf: int, length: int, cookie: int, used: int) -> None:
        desc = self.fds.directory(fd, R.FD_READDIR)
        mem = self.ctx.memory
        mem.check(buf, length)
        mem.check(used, 4)
        listing = desc.read_listing() if cookie == 0 or not desc.listing else desc.listing
        out = bytearray()
        for index in range(cookie, len(listing)):
            name, ino, kind = listing[index]
            out += DIRENT.pack(index + 1, ino, len(name), kind) + name
            if len(out) >= length:
                break
        mem.write(buf, out[:length])
        mem.set_u32(used, min(len(out), length))

    # --- paths ---------------------------------------------------------------------------

    def _dir(self, fd: int, rights: int) -> Directory:
        return self.fds.directory(fd, rights)

    def _path(self, ptr: int, length: int) -> str:
        return self.ctx.memory.string(ptr, length)

    def path_create_directory(self, fd: int, path: int, length: int) -> None:
        with fs.resolve(self._dir(fd, R.PATH_CREATE_DIRECTORY).fd, self._path(path, length), False) as (d, name):
            _os(os.mkdir, name, 0o777, dir_fd=d)

    def path_remove_directory(self, fd: int, path: int, length: int) -> None:
        with fs.resolve(self._dir(fd, R.PATH_REMOVE_DIRECTORY).fd, self._path(path, length), False) as (d, name):
            _os(os.rmdir, name, dir_fd=d)

    def path_unlink_file(self, fd: int, path: int, length: int) -> None:
        with fs.resolve(self._dir(fd, R.PATH_UNLINK_FILE).fd, self._path(path, length), False) as (d, name):
            _os(os.unlink, name, dir_fd=d)

    def path_filestat_get(self, fd: int, flags: int, path: int, length: int, out: int) -> None:
        follow = bool(flags & LOOKUP_SYMLINK_FOLLOW)
        with fs.resolve(self._dir(fd, R.PATH_FILESTAT_GET).fd, self._path(path, length), follow) as (d, name):
            st = _os(os.stat, name, dir_fd=d, follow_symlinks=False)
        self.ctx.memory.write(out, _filestat(st))

    def path_filestat_set_times(
        self, fd: int, flags: int, path: int, length: int, atim: int, mtim: int, fst: int
    ) -> None:
        follow = bool(flags & LOOKUP_SYMLINK_FOLLOW)
        with fs.resolve(self._dir(fd, R.PATH_FILESTAT_SET_TIMES).fd, self._path(path, length), follow) as (d, name):
            st = _os(os.stat, name, dir_fd=d, follow_symlinks=False)
            _os(os.utime, name, dir_fd=d, follow_symlinks=False, ns=_times(st, atim, mtim, fst))

    def path_readlink(self, fd: int, path: int, length: int, buf: int, buf_len: int, used: int) -> None:
        with fs.resolve(self._dir(fd, R.PATH_READLINK).fd, self._path(path, length), False) as (d, name):
            target = os.fsencode(_os(os.readlink, name, dir_fd=d))[:buf_len]
        self.ctx.memory.write(buf, target)
        self.ctx.memory.set_u32(used, len(target))

    def path_symlink(self, old: int, old_len: int, fd: int, path: int, length: int) -> None:
        target = self._path(old, old_len)
        with fs.resolve(self._dir(fd, R.PATH_SYMLINK).fd, self._path(path, length), False) as (d, name):
            _os(os.symlink, target, name, dir_fd=d)

    def path_link(self, old_fd: int, flags: int, old: int, old_len: int, new_fd: int, new: int, new_len: int) -> None:
        follow = bool(flags & LOOKUP_SYMLINK_FOLLOW)
        src_root = self._dir(old_fd, R.PATH_LINK_SOURCE).fd
        dst_root = self._dir(new_fd, R.PATH_LINK_TARGET).fd
        with (
            fs.resolve(src_root, self._path(old, old_len), follow) as (sd, sname),
            fs.resolve(dst_root, self._path(new, new_len), False) as (dd, dname),
        ):
            _os(os.link, sname, dname, src_dir_fd=sd, dst_dir_fd=dd, follow_symlinks=False)

    def path_rename(self, fd: int, old: int, old_len: int, new_fd: int, new: int, new_len: int) -> None:
        src_root = self._dir(fd, R.PATH_RENAME_SOURCE).fd
        dst_root = self._dir(new_fd, R.PATH_RENAME_TARGET).fd
        with (
            fs.resolve(src_root, self._path(old, old_len), False) as (sd, sname),
            fs.resolve(dst_root, self._path(new, new_len), False) as (dd, dname),
        ):
            _os(os.rename, sname, dname, src_dir_fd=sd, dst_dir_fd=dd)

    def path_open(
        self,
        fd: int,
        dirflags: int,
        path: int,
        length: int,
        oflags: int,
        base: int,
        inheriting: int,
        fdflags: int,
        out: int,
    ) -> None:
        parent = self._dir(fd, R.PATH_OPEN)
        wants_write = bool(base & _FILE_WRITE_RIGHTS) or bool(oflags & OFLAG_TRUNC)
        needed = (R.PATH_CREATE_FILE if oflags & OFLAG_CREAT else 0) | (R.FD_WRITE if wants_write else 0)
        if needed & ~(parent.rights | parent.inheriting):
            raise WasiError(Errno.NOTCAPABLE)
        if fdflags & ~FDFLAGS_ALL:
            raise WasiError(Errno.INVAL)
        flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        flags |= os.O_CREAT if oflags & OFLAG_CREAT else 0
        flags |= os.O_EXCL if oflags & OFLAG_EXCL else 0
        flags |= os.O_TRUNC if oflags & OFLAG_TRUNC else 0
        flags |= os.O_DIRECTORY if oflags & OFLAG_DIRECTORY else 0
        flags |= os.O_SYNC if fdflags & (FDFLAG_SYNC | FDFLAG_RSYNC) else 0
        flags |= os.O_DSYNC if fdflags & FDFLAG_DSYNC else 0
        reads = bool(base & _READ_RIGHTS) or not wants_write
        flags |= os.O_RDWR if wants_write and reads else os.O_WRONLY if wants_write else os.O_RDONLY
        follow = bool(dirflags & LOOKUP_SYMLINK_FOLLOW)
        self.ctx.memory.check(out, 4)
        with fs.resolve(parent.fd, self._path(path, length), follow) as (d, name):
            try:
                host_fd = os.open(name, flags, 0o666, dir_fd=d)
            except OSError as exc:
                raise from_os(exc) from None
        os.set_blocking(host_fd, True)
        rights = base & parent.inheriting
        inherit = inheriting & parent.inheriting
        kind = filetype_of(os.fstat(host_fd).st_mode)
        desc: Descriptor
        if kind == Filetype.DIRECTORY:
            desc = Directory(host_fd, rights & (parent.rights | parent.inheriting), inherit)
        else:
            desc = OsFile(
                host_fd,
                rights,
                inherit,
                fdflags & (FDFLAG_APPEND | FDFLAG_NONBLOCK | FDFLAG_SYNC | FDFLAG_DSYNC | FDFLAG_RSYNC),
            )
        self.ctx.memory.set_u32(out, self.fds.add(desc))

    # --- poll ----------------------------------------------------------------------------

    async def poll_oneoff(self, in_ptr: int, out_ptr: int, nsubs: int, nevents: int) -> None:
        """Level-triggered poll, except that readiness the guest already saw and did no I/O
        about since is held back up to ``idle_backoff`` (growing while the guest stays idle),
        so guests that re-poll every writable socket (mio_wasi 0.8.7) do not spin."""
        if nsubs == 0:
            raise WasiError(Errno.INVAL)
        mem = self.ctx.memory
        mem.check(out_ptr, nsubs * 32)
        mem.check(nevents, 4)
        now = time.monotonic_ns()
        subs = self._decode(mem.read(in_ptr, nsubs * SUBSCRIPTION.size), now)
        # Looked up once: the guest cannot change its table while it waits in here.
        targets = self._targets(subs)
        held_until: int | None = None
        while True:
            ready = self._poll_once(subs, targets, now)
            fresh = [r for r in ready if not r.stale]
            if fresh or (ready and held_until is not None and now >= held_until):
                chosen = fresh or ready
                self._poll.idle_ns = 0 if fresh else min((self._poll.idle_ns or _FIRST_HOLD_NS) * 2, self._max_idle_ns)
                for r in chosen:
                    if r.desc is not None:
                        r.desc.saw(subs[r.position].type)
                mem.write(out_ptr, b"".join([r.event for r in chosen]))
                mem.set_u32(nevents, len(chosen))
                return
            if ready and held_until is None:
                held_until = now + (self._poll.idle_ns or _FIRST_HOLD_NS)
            deadline = poll.next_deadline(subs)
            if held_until is not None:
                deadline = held_until if deadline is None else min(deadline, held_until)
            busy = {r.position for r in ready}
            readers: list[int] = []
            writers: list[int] = []
            for i, target in enumerate(targets):
                if isinstance(target, Descriptor) and i not in busy:
                    osfd = target.os_fd()
                    if osfd is not None:
                        (writers if subs[i].type == poll.FD_WRITE else readers).append(osfd)
            await self.ctx.wait(readers, writers, None if deadline is None else max(0, deadline - now) / 1e9)
            now = time.monotonic_ns()

    epoll_oneoff = poll_oneoff

    def _decode(self, data: bytes, now: int) -> list[poll.Subscription]:
        subs = self._decoded.get(data)
        if subs is None:
            subs = poll.decode(data, now, time.time_ns())
            if all(sub.type != poll.CLOCK for sub in subs):  # a clock's deadline depends on now
                self._decoded.keep(data, subs, len(subs))
        return subs

    def _targets(self, subs: list[poll.Subscription]) -> list[Descriptor | Errno | None]:
        """What each fd subscription watches (or the errno that is its event); None for
        clocks. Each descriptor is looked up once: mio subscribes to both directions."""
        found: dict[int, Descriptor | Errno] = {}
        targets: list[Descriptor | Errno | None] = []
        for sub in subs:
            if sub.error or sub.type == poll.CLOCK:
                targets.append(None)
                continue
            target = found.get(sub.fd)
            if target is None:
                try:
                    target = self.fds.get(sub.fd, R.POLL_FD_READWRITE)
                except WasiError as exc:
                    target = exc.errno
                found[sub.fd] = target
            targets.append(target)
        return targets

    def _poll_once(
        self, subs: list[poll.Subscription], targets: list[Descriptor | Errno | None], now: int
    ) -> list[_Ready]:
        """Everything ready now, in subscription order; fd readiness is checked with poll(2)."""
        slots: list[_Ready | None] = [None] * len(subs)
        masks: dict[int, int] = {}
        polled: list[tuple[int, poll.Subscription, Descriptor, int]] = []
        for i, target in enumerate(targets):
            sub = subs[i]
            if target is None:
                if sub.error or poll.expired(sub, now):
                    slots[i] = _ready((poll.event(sub, sub.error), i, None, False))
            elif not isinstance(target, Descriptor):
                slots[i] = _ready((poll.event(sub, target), i, None, False))
            else:
                osfd = target.os_fd()
                if osfd is None:
                    slots[i] = _ready((poll.event(sub, nbytes=_ready_bytes(target, sub.type)), i, None, False))
                else:
                    masks[osfd] = masks.get(osfd, 0) | (select.POLLIN if sub.type == poll.FD_READ else select.POLLOUT)
                    polled.append((i, sub, target, osfd))
        if polled:
            key = tuple(masks.items())
            poller = self._pollers.get(key)
            if poller is None:
                poller = select.poll()
                for osfd, mask in key:
                    poller.register(osfd, mask)
                self._pollers.keep(key, poller, len(key))
            revents = dict(poller.poll(0))
            for i, sub, desc, osfd in polled:
                event = poll.fd_event(sub, revents.get(osfd, 0))
                if event is not None:
                    stale = self._max_idle_ns > 0 and desc.seen(sub.type) == desc.io_seq
                    slots[i] = _ready((event, i, desc, stale))
        return [r for r in slots if r is not None]


class _Kept(Generic[_K, _V]):
    """Values kept for reuse within a budget (``_KEPT``, ``_KEPT_ITEMS``); full, it starts over."""

    def __init__(self) -> None:
        self._values: dict[_K, _V] = {}
        self._items = 0

    def get(self, key: _K) -> _V | None:
        return self._values.get(key)

    def keep(self, key: _K, value: _V, items: int) -> None:
        if items > _KEPT_ITEMS:
            return
        if len(self._values) >= _KEPT or self._items + items > _KEPT_ITEMS:
            self._values.clear()
            self._items = 0
        self._values[key] = value
        self._items += items


class _Ready(NamedTuple):
    event: bytes  # encoded
    position: int  # of its subscription
    desc: Descriptor | None
    stale: bool


_ready = functools.partial(tuple.__new__, _Ready)


def _ready_bytes(desc: Descriptor, kind: int) -> int:
    if kind == EventType.FD_READ and isinstance(desc, OsFile) and desc.filetype == Filetype.REGULAR_FILE:
        st = os.fstat(desc.fd)
        return max(0, st.st_size - os.lseek(desc.fd, 0, os.SEEK_CUR))
    return 0


def _os(func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call an ``os`` function, turning ``OSError`` into the matching WASI errno."""
    try:
        return func(*args, **kwargs)
    except OSError as exc:
        raise from_os(exc) from None


def _filestat(st: os.stat_result) -> bytes:
    return FILESTAT.pack(
        st.st_dev,
        st.st_ino,
        filetype_of(st.st_mode),
        st.st_nlink,
        st.st_size,
        st.st_atime_ns,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def _times(st: os.stat_result, atim: int, mtim: int, flags: int) -> tuple[int, int]:
    """(atime, mtime) in ns; a time past 2262 does not fit the host's 64-bit ns: ``OVERFLOW``."""
    if (flags & FST_ATIM and flags & FST_ATIM_NOW) or (flags & FST_MTIM and flags & FST_MTIM_NOW):
        raise WasiError(Errno.INVAL)
    if (flags & FST_ATIM and atim >= 1 << 63) or (flags & FST_MTIM and mtim >= 1 << 63):
        raise WasiError(Errno.OVERFLOW)
    now = time.time_ns()
    atime = atim if flags & FST_ATIM else now if flags & FST_ATIM_NOW else st.st_atime_ns
    mtime = mtim if flags & FST_MTIM else now if flags & FST_MTIM_NOW else st.st_mtime_ns
    return atime, mtime
