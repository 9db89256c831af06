"""State shared by every WASI function of one instance, and the two ways a guest ends early."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..net.wait import ThreadWaiter, Waiter
from .fdtable import FdTable
from .memory import GuestMemory


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
        self._stop_reason = stop_reason

    def check_stop(self) -> None:
        reason = self._stop_reason()
        if reason is not None:
            raise Interrupted(reason)

    def wait(self, readers: Iterable[int], writers: Iterable[int], timeout: float | None) -> None:
        """Block until ready, timed out or woken, then raise if the instance was stopped."""
        self.check_stop()
        self.waiter.wait(readers, writers, timeout)
        self.check_stop()

    def close(self) -> None:
        self.fds.close_all()
        self.waiter.close()
