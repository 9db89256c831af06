"""wasmhost's own WASI 0.2 for components: the interfaces (``io``, ``clocks``, ``random``,
``cli``, ``filesystem``, ``sockets``, ``http``) as host functions over sans-I/O state, linked
by ``linking``, and ``ComponentHandler``, which serves a wasi:http/proxy component."""

from .context import GuestExit, WasiConfig
from .handler import ComponentHandler

__all__ = ["ComponentHandler", "GuestExit", "WasiConfig"]
