"""wasi:io/streams, sans-I/O: byte streams with bounded buffers, so a guest that writes faster
than the other side reads waits (``check-write`` says how much fits), and a reader that finds
nothing buffered gets an empty read and a pollable to wait on.

``Pipe`` carries a body from the guest to the host (the response); ``Feed`` carries one from
the host to the guest (the request body), filled ahead by at most one read of its source.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from .poll import AlwaysReady

#: wasi:io/streams allows at most this many bytes per blocking-write-and-flush.
BLOCKING_WRITE_LIMIT = 4096


class StreamClosed(Exception):
    """The stream is closed (``stream-error.closed``)."""


class StreamFailed(Exception):
    """The last operation failed (``stream-error.last-operation-failed``, with this message)."""


class InputStream(AlwaysReady):
    """What the guest reads: ``read`` returns what is buffered now (maybe ``b""``)."""

    def read(self, size: int) -> bytes:
        raise StreamClosed


class OutputStream(AlwaysReady):
    """What the guest writes: ``check_write`` is how many bytes ``write`` accepts now."""

    def check_write(self) -> int:
        raise StreamClosed

    def write(self, data: bytes) -> None:
        raise StreamClosed

    def flush(self) -> None:
        return None


class Sink(OutputStream):
    """An output stream that never waits: stdout and stderr, handed to ``emit``."""

    def __init__(self, emit: Callable[[bytes], None], capacity: int = 1 << 20) -> None:
        self._emit = emit
        self._capacity = capacity

    def check_write(self) -> int:
        return self._capacity

    def write(self, data: bytes) -> None:
        self._emit(data)


class Pipe(OutputStream):
    """A bounded buffer from the guest (writer) to the host (``get``): the guest may write
    while fewer than ``capacity`` bytes are queued, and waits otherwise."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self.closed = False  # the writer is done
        self.broken = False  # the reader went away
        self._changed = asyncio.Event()

    # --- the guest's side -----------------------------------------------------------------

    def check_write(self) -> int:
        if self.broken:
            raise StreamFailed("the client went away")
        if self.closed:
            raise StreamClosed
        return max(0, self.capacity - self._queued)

    def write(self, data: bytes) -> None:
        if len(data) > self.check_write():
            raise StreamFailed("write exceeds check-write")
        if data:
            self._chunks.append(data)
            self._queued += len(data)
            self._changed.set()

    def ready(self) -> bool:
        return self.broken or self.closed or self._queued < self.capacity

    async def wait(self) -> None:
        self._changed.clear()
        if not self.ready():
            await self._changed.wait()

    def finish(self) -> None:
        """The writer is done: the reader gets what is queued, then the end."""
        self.closed = True
        self._changed.set()

    # --- the host's side ------------------------------------------------------------------

    async def get(self) -> bytes | None:
        """The next queued bytes, waiting for them; None once the writer closed and all was read."""
        while not self._chunks:
            if self.closed or self.broken:
                return None
            self._changed.clear()
            await self._changed.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._queued = 0
        self._changed.set()
        return data

    def break_(self) -> None:
        """The reader is gone, or the writer gave up: what is queued is dropped, writes fail."""
        self.broken = True
        self._chunks.clear()
        self._queued = 0
        self._changed.set()


class Feed(InputStream):
    """A body the guest reads from an async ``source`` (``source()`` returns ``b""`` at the end):
    at most one read of the source is in flight, started when the guest finds nothing buffered."""

    def __init__(self, source: Callable[[], Awaitable[bytes]]) -> None:
        self._source = source
        self._buffer = b""
        self._ended = False
        self._error: BaseException | None = None
        self._pending: asyncio.Task[bytes] | None = None

    def _collect(self) -> None:
        task = self._pending
        if task is None or not task.done():
            return
        self._pending = None
        if task.cancelled():
            self._error = StreamFailed("the body read was cancelled")
        elif task.exception() is not None:
            self._error = task.exception()
        else:
            data = task.result()
            self._buffer += data
            self._ended = not data

    def read(self, size: int) -> bytes:
        self._collect()
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        if self._error is not None:
            raise StreamFailed(str(self._error))
        if self._ended:
            raise StreamClosed
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._source())
        return b""

    def ready(self) -> bool:
        self._collect()
        return bool(self._buffer) or self._ended or self._error is not None

    async def wait(self) -> None:
        if self.ready():
            return
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._source())
        await asyncio.wait([self._pending])

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
