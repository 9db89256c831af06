"""wasi:io/poll: pollables tied to real readiness (a stream's buffer, a timer, a response)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import attrs


class Readiness(Protocol):
    """Something a pollable waits on: ready now, or an awaitable that ends when it may be."""

    def ready(self) -> bool: ...

    async def wait(self) -> None: ...


class AlwaysReady:
    """What never makes the guest wait (a default that subclasses with a real wait override)."""

    def ready(self) -> bool:
        return True

    async def wait(self) -> None:
        return None


class TaskReadiness:
    """Ready when an asyncio task is done (a name lookup, an outgoing request); closing it
    cancels the task."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task

    def ready(self) -> bool:
        return self.task.done()

    async def wait(self) -> None:
        await asyncio.wait([self.task])

    def close(self) -> None:
        self.task.cancel()


@attrs.define
class Timer:
    """Ready once the monotonic clock (``time.monotonic_ns``) reaches ``deadline``."""

    deadline: int

    def ready(self) -> bool:
        return time.monotonic_ns() >= self.deadline

    async def wait(self) -> None:
        remaining = self.deadline - time.monotonic_ns()
        if remaining > 0:
            await asyncio.sleep(remaining / 1e9)


@attrs.define
class Pollable:
    """The guest's handle on a ``Readiness``."""

    source: Readiness


async def poll(sources: list[Readiness]) -> list[int]:
    """The indices of the sources ready now; if none is, wait until at least one is."""
    while True:
        ready = [i for i, source in enumerate(sources) if source.ready()]
        if ready:
            return ready
        waits = [asyncio.ensure_future(source.wait()) for source in sources]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()


async def block(source: Readiness) -> None:
    while not source.ready():
        await source.wait()
