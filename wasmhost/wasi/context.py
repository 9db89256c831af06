"""State shared by every WASI function of one instance, and the two ways a guest ends early."""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TypeVar

from ..net.wait import ThreadWaiter, Waiter
from .abi import FDFLAG_NONBLOCK, Errno, WasiError
from .fdtable import Descriptor, FdTable
from .memory import GuestMemory

_T = TypeVar("_T")


class ProcExit(Exception):
    """The guest called ``proc_exit``: an exit code, not an error."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Interrupted(Exception):
    """A blocking host call saw that the instance was stopped (or ran out of time)."""


class WasiContext:
    """Args, environment, descriptors, memory and the waiter of one guest."""

    def __init__(
        self, args: list[bytes], env: list[bytes], fds: FdTable, stop_reason: Callable[[], str | None]
    ) -> None:
        self.args = args
        self.env = env
        self.fds = fds
        self.memory = GuestMemory(lambda: (0, 0))
        self.waiter: Waiter = ThreadWaiter()
        self.loop: asyncio.AbstractEventLoop | None = None  # set while served on a loop
        #: Entered around every blocking wait (the instance pauses its epoch clock there).
        self.blocked: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        self._stop_reason = stop_reason

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    def check_stop(self) -> None:
        reason = self._stop_reason()
        if reason is not None:
            raise Interrupted(reason)

    def wait(self, readers: Iterable[int], writers: Iterable[int], timeout: float | None) -> None:
        """Block until ready, timed out or woken, then raise if the instance was stopped."""
        self.check_stop()
        with self.blocked():
            self.waiter.wait(readers, writers, timeout)
        self.check_stop()

    def blocking(self, desc: Descriptor, write: bool, op: Callable[[], _T], timeout: float | None = None) -> _T:
        """Run an I/O ``op``; if a blocking-mode descriptor would block, wait and retry.

        ``timeout`` (SO_RCVTIMEO/SO_SNDTIMEO) turns a long wait into ``AGAIN``.
        """
        desc.io_seq += 1
        if desc.blocks_host():
            self._until_ready(desc, write)
        while True:
            try:
                return op()
            except WasiError as exc:
                osfd = desc.os_fd()
                if exc.errno != Errno.AGAIN or desc.flags & FDFLAG_NONBLOCK or osfd is None:
                    raise
            start = self.clock()
            self.wait([] if write else [osfd], [osfd] if write else [], timeout)
            if timeout is not None:
                timeout -= self.clock() - start
                if timeout <= 0:
                    raise WasiError(Errno.AGAIN)

    def _until_ready(self, desc: Descriptor, write: bool) -> None:
        osfd = desc.os_fd()
        assert osfd is not None
        mask = select.POLLOUT if write else select.POLLIN
        poller = select.poll()
        poller.register(osfd, mask)
        while not poller.poll(0):
            self.wait([] if write else [osfd], [osfd] if write else [], None)

    def close(self) -> None:
        self.fds.close_all()
        self.waiter.close()
