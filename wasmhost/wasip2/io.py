"""wasi:io 0.2 (error, poll, streams) as host functions over ``streams`` and ``poll``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .._native.component import Err, Ok
from .context import Wasi
from .poll import Pollable, Readiness, block, poll
from .streams import BLOCKING_WRITE_LIMIT, InputStream, OutputStream, StreamClosed, StreamFailed

ERROR = "wasi:io/error@0.2.0"
POLL = "wasi:io/poll@0.2.0"
STREAMS = "wasi:io/streams@0.2.0"

RESOURCES = [(ERROR, "error"), (POLL, "pollable"), (STREAMS, "input-stream"), (STREAMS, "output-stream")]


class IoError:
    """The payload of ``stream-error.last-operation-failed``."""

    def __init__(self, message: str) -> None:
        self.message = message


def _stream_error(wasi: Wasi, exc: Exception) -> Err:
    if isinstance(exc, StreamClosed):
        return Err(("closed", None))
    return Err(("last-operation-failed", wasi.table.push(IoError(str(exc)))))


def guarded(wasi: Wasi, op: Callable[[], Any]) -> Ok | Err:
    """Run a stream operation; a closed or failed stream becomes the ``stream-error`` result."""
    try:
        return Ok(op())
    except (StreamClosed, StreamFailed) as exc:
        return _stream_error(wasi, exc)


def subscribe(wasi: Wasi, rep: int, kind: type) -> int:
    """A pollable on any resource that is its own ``Readiness`` (streams, bodies, futures),
    which it holds open."""
    source: Readiness = wasi.table.get(rep, kind)
    return wasi.table.push(Pollable(source), holds=source)


# --- error and poll ------------------------------------------------------------------------


def error_to_debug_string(wasi: Wasi, rep: int) -> str:
    return wasi.table.get(rep, IoError).message


def pollable_ready(wasi: Wasi, rep: int) -> bool:
    return wasi.table.get(rep, Pollable).source.ready()


async def pollable_block(wasi: Wasi, rep: int) -> None:
    await block(wasi.table.get(rep, Pollable).source)


async def poll_list(wasi: Wasi, reps: list[int]) -> list[int]:
    if not reps:
        raise ValueError("poll needs at least one pollable")
    return await poll([wasi.table.get(rep, Pollable).source for rep in reps])


# --- input streams ---------------------------------------------------------------------------


def read(wasi: Wasi, rep: int, size: int) -> Ok | Err:
    stream = wasi.table.get(rep, InputStream)
    return guarded(wasi, lambda: stream.read(size))


async def blocking_read(wasi: Wasi, rep: int, size: int) -> Ok | Err:
    stream = wasi.table.get(rep, InputStream)
    while True:
        outcome = guarded(wasi, lambda: stream.read(size))
        if isinstance(outcome, Err) or outcome.value or not size:
            return outcome
        await block(stream)


def skip(wasi: Wasi, rep: int, size: int) -> Ok | Err:
    stream = wasi.table.get(rep, InputStream)
    return guarded(wasi, lambda: len(stream.read(size)))


async def blocking_skip(wasi: Wasi, rep: int, size: int) -> Ok | Err:
    outcome = await blocking_read(wasi, rep, size)
    return Ok(len(outcome.value)) if isinstance(outcome, Ok) else outcome


def input_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, InputStream)


# --- output streams --------------------------------------------------------------------------


def check_write(wasi: Wasi, rep: int) -> Ok | Err:
    return guarded(wasi, wasi.table.get(rep, OutputStream).check_write)


def write(wasi: Wasi, rep: int, data: bytes) -> Ok | Err:
    stream = wasi.table.get(rep, OutputStream)
    return guarded(wasi, lambda: stream.write(data))


def flush(wasi: Wasi, rep: int) -> Ok | Err:
    return guarded(wasi, wasi.table.get(rep, OutputStream).flush)


async def blocking_flush(wasi: Wasi, rep: int) -> Ok | Err:
    return flush(wasi, rep)


def _over_limit(wasi: Wasi, size: int) -> Err | None:
    if size > BLOCKING_WRITE_LIMIT:
        return _stream_error(wasi, StreamFailed(f"a blocking write takes at most {BLOCKING_WRITE_LIMIT} bytes"))
    return None


async def blocking_write_and_flush(wasi: Wasi, rep: int, data: bytes) -> Ok | Err:
    """Write ``data`` (at most 4096 bytes), waiting as long as the stream is full."""
    refused = _over_limit(wasi, len(data))
    if refused is not None:
        return refused
    stream = wasi.table.get(rep, OutputStream)
    while data:
        room = guarded(wasi, stream.check_write)
        if isinstance(room, Err):
            return room
        if room.value:
            part, data = data[: room.value], data[room.value :]
            outcome = guarded(wasi, functools.partial(stream.write, part))
            if isinstance(outcome, Err):
                return outcome
        else:
            await block(stream)
    return flush(wasi, rep)


def write_zeroes(wasi: Wasi, rep: int, size: int) -> Ok | Err:
    """Like ``write``, within what ``check-write`` permits: the zeroes are made only then."""
    stream = wasi.table.get(rep, OutputStream)
    room = guarded(wasi, stream.check_write)
    if isinstance(room, Err):
        return room
    if size > room.value:
        return _stream_error(wasi, StreamFailed("write-zeroes exceeds check-write"))
    return guarded(wasi, lambda: stream.write(bytes(size)))


async def blocking_write_zeroes_and_flush(wasi: Wasi, rep: int, size: int) -> Ok | Err:
    refused = _over_limit(wasi, size)
    return refused if refused is not None else await blocking_write_and_flush(wasi, rep, bytes(size))


def splice(wasi: Wasi, rep: int, source: int, size: int) -> Ok | Err:
    stream = wasi.table.get(rep, OutputStream)
    room = guarded(wasi, stream.check_write)
    if isinstance(room, Err):
        return room
    data = read(wasi, source, min(size, room.value))
    if isinstance(data, Err):
        return data
    outcome = guarded(wasi, lambda: stream.write(data.value))
    return Ok(len(data.value)) if isinstance(outcome, Ok) else outcome


async def blocking_splice(wasi: Wasi, rep: int, source: int, size: int) -> Ok | Err:
    data = await blocking_read(wasi, source, min(size, BLOCKING_WRITE_LIMIT))
    if isinstance(data, Err):
        return data
    outcome = await blocking_write_and_flush(wasi, rep, data.value)
    return Ok(len(data.value)) if isinstance(outcome, Ok) else outcome


def output_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, OutputStream)


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    (ERROR, "[method]error.to-debug-string"): error_to_debug_string,
    (POLL, "[method]pollable.ready"): pollable_ready,
    (POLL, "[method]pollable.block"): pollable_block,
    (POLL, "poll"): poll_list,
    (STREAMS, "[method]input-stream.read"): read,
    (STREAMS, "[method]input-stream.blocking-read"): blocking_read,
    (STREAMS, "[method]input-stream.skip"): skip,
    (STREAMS, "[method]input-stream.blocking-skip"): blocking_skip,
    (STREAMS, "[method]input-stream.subscribe"): input_subscribe,
    (STREAMS, "[method]output-stream.check-write"): check_write,
    (STREAMS, "[method]output-stream.write"): write,
    (STREAMS, "[method]output-stream.flush"): flush,
    (STREAMS, "[method]output-stream.blocking-flush"): blocking_flush,
    (STREAMS, "[method]output-stream.blocking-write-and-flush"): blocking_write_and_flush,
    (STREAMS, "[method]output-stream.write-zeroes"): write_zeroes,
    (STREAMS, "[method]output-stream.blocking-write-zeroes-and-flush"): blocking_write_zeroes_and_flush,
    (STREAMS, "[method]output-stream.splice"): splice,
    (STREAMS, "[method]output-stream.blocking-splice"): blocking_splice,
    (STREAMS, "[method]output-stream.subscribe"): output_subscribe,
}
