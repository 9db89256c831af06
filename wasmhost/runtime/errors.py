"""The runtime's one error: a message runc would print, which exits 1."""

from __future__ import annotations

from ..errors import WasmhostError


class RuntimeFailure(WasmhostError):
    """One line for stderr (and the `--log` file); the runtime exits 1, as runc does."""
