"""State shared by every WASI function of one instance, the two ways a guest ends early, and
how a host function waits.

A guest runs on a fiber driven by the event loop (``_native.fiber``). A host function that
must block is a coroutine: it awaits ``wait()``, which registers the descriptors on the loop
(uvloop when serving), and the fiber stays suspended until they are ready, a timer fires or
the instance is stopped. Other guests and the application's coroutines run meanwhile.

A registration outlives the wait: a server waits on the same few descriptors over and over,
and registering anew each time costs more than the rest of the wait (about 10 µs on uvloop,
20 µs on asyncio's loop). It ends when the descriptor is closed (``forget``), when the loop
reports readiness nobody is waiting for, and when the call ends (``release``).
"""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from .abi import FDFLAG_NONBLOCK, Errno, WasiError
from .fdtable import Descriptor, FdTable
from .memory import GuestMemory

_T = TypeVar("_T")
_Key = tuple[int, bool]  # (host descriptor, whether waiting to write)


class ProcExit(Exception):
    """The guest called ``proc_exit``: an exit code, not an error."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Interrupted(Exception):
    """A blocking host call saw that the instance was stopped (or ran out of time)."""


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class WasiContext:
    """Args, environment, descriptors, memory and the waits of one guest."""

    def __init__(
        self, args: list[bytes], env: list[bytes], fds: FdTable, stop_reason: Callable[[], str | None]
    ) -> None:
        self.args = args
        self.env = env
        self.fds = fds
        self.memory = GuestMemory(lambda: (0, 0))
        #: The loop driving the guest's current call (set by the instance for each call).
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop_reason = stop_reason
        self._waiting: asyncio.Future[None] | None = None
        self._wanted: set[_Key] = set()
        #: Descriptors registered on ``_watching`` (see the module docstring).
        self._watched: set[_Key] = set()
        self._watching: asyncio.AbstractEventLoop | None = None
        fds.on_close = self.forget

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    def check_stop(self) -> None:
        reason = self._stop_reason()
        if reason is not None:
            raise Interrupted(reason)

    def wake(self) -> None:
        """End the current wait early (on the loop's thread): the guest then sees a stop."""
        if self._waiting is not None:
            _settle(self._waiting)

    async def wait(self, readers: Iterable[int], writers: Iterable[int], timeout: float | None) -> None:
        """Suspend until a descriptor is ready, ``timeout`` passes or ``wake()``; then raise
        ``Interrupted`` if the instance was stopped."""
        self.check_stop()
        loop = self.loop
        assert loop is not None, "a guest waits only while a loop drives it"
        if loop is not self._watching:
            self.release()
            self._watching = loop
        future: asyncio.Future[None] = loop.create_future()
        wanted = {(fd, False) for fd in readers} | {(fd, True) for fd in writers}
        timer = None if timeout is None else loop.call_later(max(0.0, timeout), _settle, future)
        try:
            for key in wanted - self._watched:
                (loop.add_writer if key[1] else loop.add_reader)(key[0], self._ready, key)
                self._watched.add(key)
        except (OSError, ValueError):
            _settle(future)  # a descriptor went bad: the guest's next call on it reports why
        self._waiting, self._wanted = future, wanted
        try:
            await future
        finally:
            self._waiting = None
            self._wanted = set()
            if timer is not None:
                timer.cancel()
        self.check_stop()

    def _ready(self, key: _Key) -> None:
        if self._waiting is not None and key in self._wanted:
            _settle(self._waiting)
        else:  # level-triggered readiness nobody waits for would be reported on every turn
            self._unwatch(key)

    def _unwatch(self, key: _Key) -> None:
        self._watched.discard(key)
        if self._watching is not None:
            (self._watching.remove_writer if key[1] else self._watching.remove_reader)(key[0])

    def forget(self, fds: Iterable[int]) -> None:
        """Unregister host descriptors about to be closed: the loop must not watch a closed
        descriptor, nor keep watching its number once reused."""
        for fd in fds:
            for key in ((fd, False), (fd, True)):
                if key in self._watched:
                    self._unwatch(key)

    def release(self) -> None:
        """Unregister everything (a call ended: its loop may close or run other work)."""
        for key in list(self._watched):
            self._unwatch(key)
        self._watching = None

    async def blocking(self, desc: Descriptor, write: bool, op: Callable[[], _T]) -> _T:
        """Run an I/O ``op``; if a blocking-mode descriptor would block, wait and retry.

        The descriptor's timeout (a socket's SO_RCVTIMEO/SO_SNDTIMEO) turns a long wait into
        ``AGAIN``, as on Linux, whichever call it is: ``sock_recv`` or ``fd_read`` alike.
        """
        desc.io_seq += 1
        if desc.flags & FDFLAG_NONBLOCK:
            return op()  # the guest's own non-blocking call: it never waits here, AGAIN included
        osfd = desc.os_fd()
        if desc.blocks_host() and osfd is not None:
            # A pipe or terminal shared with the host process stays in blocking mode: wait for
            # readiness first, so the loop's thread never blocks inside the call.
            await self._until_ready(osfd, write)
        timeout = desc.timeout(write)
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            try:
                return op()
            except WasiError as exc:
                if exc.errno != Errno.AGAIN or osfd is None:
                    raise
            remaining = None if deadline is None else deadline - self.clock()
            if remaining is not None and remaining <= 0:
                raise WasiError(Errno.AGAIN)
            await self.wait([] if write else [osfd], [osfd] if write else [], remaining)

    async def _until_ready(self, osfd: int, write: bool) -> None:
        poller = select.poll()
        poller.register(osfd, select.POLLOUT if write else select.POLLIN)
        while not poller.poll(0):
            await self.wait([] if write else [osfd], [osfd] if write else [], None)

    def close(self) -> None:
        self.fds.close_all()
        self.release()
