"""wasi:clocks 0.2 (monotonic and wall clock); timers are ``poll.Timer`` pollables."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .context import Wasi
from .poll import Pollable, Timer

MONOTONIC = "wasi:clocks/monotonic-clock@0.2.0"
WALL = "wasi:clocks/wall-clock@0.2.0"
RESOURCES: list[tuple[str, str]] = []


def monotonic_now(_wasi: Wasi) -> int:
    return time.monotonic_ns()


def resolution(_wasi: Wasi) -> int:
    return 1


def subscribe_instant(wasi: Wasi, when: int) -> int:
    return wasi.table.push(Pollable(Timer(when)))


def subscribe_duration(wasi: Wasi, duration: int) -> int:
    return wasi.table.push(Pollable(Timer(time.monotonic_ns() + duration)))


def wall_now(_wasi: Wasi) -> tuple[int, int]:
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return seconds, nanoseconds


def wall_resolution(_wasi: Wasi) -> tuple[int, int]:
    return 0, 1000


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    (MONOTONIC, "now"): monotonic_now,
    (MONOTONIC, "resolution"): resolution,
    (MONOTONIC, "subscribe-instant"): subscribe_instant,
    (MONOTONIC, "subscribe-duration"): subscribe_duration,
    (WALL, "now"): wall_now,
    (WALL, "resolution"): wall_resolution,
}
