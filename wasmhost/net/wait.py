"""Blocking waits for a guest thread: until host fds are ready, a deadline passes, or stop.

The guest runs on its own thread; when it must block (``poll_oneoff``, a blocking socket
call) it asks a ``Waiter``. ``ThreadWaiter`` polls in the guest thread itself;
``LoopWaiter`` registers the fds on an asyncio loop (uvloop when installed) so the loop owns
every wait and other guests and coroutines keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
from collections.abc import Iterable


class Waiter:
    """Interface: wait for readiness; ``wake()`` (any thread) ends the current or next wait."""

    def wait(self, readers: Iterable[int], writers: Iterable[int], timeout: float | None) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the waiter holds."""


class ThreadWaiter(Waiter):
    """``poll(2)`` in the calling thread, woken early through a pipe."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wait(self, readers: Iterable[int], writers: Iterable[int], timeout: float | None) -> None:
        poller = select.poll()
        poller.register(self._r, select.POLLIN)
        masks: dict[int, int] = {}
        for fd in readers:
            masks[fd] = masks.get(fd, 0) | select.POLLIN
        for fd in writers:
            masks[fd] = masks.get(fd, 0) | select.POLLOUT
        for fd, mask in masks.items():
            poller.register(fd, mask)
        poller.poll(None if timeout is None else max(0.0, timeout) * 1000)
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._w, b"\0")

    def close(self) -> None:
        for fd in (self._r, self._w):
            os.close(fd)
        self._r = self._w = -1


class LoopWaiter(Waiter):
    """The wait happens on an asyncio loop running in another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done = threading.Event()
        self._woken = False
        self._lock = threading.Lock()

    def wait(self, readers: Iterable[int], writers: Iterable[int], timeout: float | None) -> None:
        with self._lock:
            if self._woken:
                self._woken = False
                return
            self._done.clear()
        readers, writers = list(readers), list(writers)
        loop = self._loop
        handles: list[asyncio.TimerHandle] = []
        done = self._done

        def fire() -> None:
            done.set()

        def arm() -> None:
            try:
                for fd in readers:
                    loop.add_reader(fd, fire)
                for fd in writers:
                    loop.add_writer(fd, fire)
            except OSError:
                fire()  # a descriptor went bad: the guest's next call on it reports why
            if timeout is not None:
                handles.append(loop.call_later(max(0.0, timeout), fire))

        def disarm() -> None:
            for fd in readers:
                with contextlib.suppress(OSError):
                    loop.remove_reader(fd)
            for fd in writers:
                with contextlib.suppress(OSError):
                    loop.remove_writer(fd)
            for handle in handles:
                handle.cancel()

        loop.call_soon_threadsafe(arm)
        done.wait()
        # The fds must be unregistered before the guest may close them (libuv aborts on a
        # closed fd), so wait for the disarm, unless the loop stopped and never will run it.
        disarmed = threading.Event()

        def release() -> None:
            disarm()
            disarmed.set()

        loop.call_soon_threadsafe(release)
        while not disarmed.wait(0.1):
            if loop.is_closed() or not loop.is_running():
                break
        with self._lock:
            self._woken = False

    def wake(self) -> None:
        with self._lock:
            self._woken = True
            self._done.set()
