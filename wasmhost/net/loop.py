"""The event loop wasmhost's servers run on: uvloop when it is installed, else asyncio's own.

``WASMHOST_LOOP`` chooses: ``auto`` (the default), ``uvloop`` (an error without it) or
``asyncio``. Worker processes inherit it with the rest of the environment.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..errors import ConfigError

_T = TypeVar("_T")
VARIABLE = "WASMHOST_LOOP"
KINDS = ("auto", "uvloop", "asyncio")


def kind() -> str:
    """The kind of loop ``WASMHOST_LOOP`` asks for (the CLI checks it before loading a guest)."""
    value = os.environ.get(VARIABLE) or "auto"
    if value not in KINDS:
        raise ConfigError(f"{VARIABLE}={value}: expected one of {', '.join(KINDS)}")
    return value


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind ``WASMHOST_LOOP`` names."""
    wanted = kind()
    if wanted != "asyncio":
        try:
            import uvloop
        except ImportError:
            if wanted == "uvloop":
                raise ConfigError(f"{VARIABLE}=uvloop: uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` on a loop from ``new_loop``."""
    try:
        loop = new_loop()
    except BaseException:
        main.close()  # never started: no "never awaited" warning
        raise
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            return runner.run(main)
    asyncio.set_event_loop_policy(_Policy(loop))  # pragma: no cover - Python 3.10
    return asyncio.run(main)  # pragma: no cover


class _Policy(asyncio.DefaultEventLoopPolicy):  # pragma: no cover - Python 3.10 has no loop_factory
    """Hands ``asyncio.run`` the loop already made."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop
