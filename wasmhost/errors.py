"""One exception hierarchy; every message names the thing and the reason."""

from __future__ import annotations

from collections.abc import Sequence


class WasmhostError(Exception):
    """Base of every error wasmhost raises on purpose."""


class ModuleError(WasmhostError):
    """The file or bytes are not a module wasmhost can run (missing, not wasm, a component...)."""


class LinkError(WasmhostError):
    """The module imports functions the host does not provide; all of them are listed."""

    def __init__(self, source: str, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(f"{source}: unknown imports: {', '.join(self.missing)}")


class ConfigError(WasmhostError):
    """A ``Host`` setting is invalid (a preopen that does not exist, a bad limit...)."""


class GuestTrap(WasmhostError):
    """The guest trapped: ``kind`` is the trap code, ``frames`` the wasm backtrace and
    ``stderr`` the last 4 KiB the guest wrote to its stderr (often a panic message)."""

    def __init__(self, source: str, message: str, kind: str | None, frames: Sequence[str], stderr: str = "") -> None:
        self.message = message
        self.kind = kind
        self.frames = list(frames)
        self.stderr = stderr
        what = f"{kind}" if kind else message
        super().__init__(f"{source}: guest trapped: {what}")

    def details(self) -> str:
        """The message plus the wasm backtrace, for logs."""
        lines = [str(self)]
        if self.kind and self.message and self.kind not in self.message:
            lines.append(f"  {self.message}")
        lines += [f"  at {frame}" for frame in self.frames]
        return "\n".join(lines)


class HostFailure(WasmhostError):
    """A host function failed with a Python exception (a wasmhost bug, reported as such)."""


class Interrupted(WasmhostError):
    """The guest was stopped before it finished: ``Instance.stop()``."""


class Timeout(Interrupted):
    """The guest ran past its wall-clock limit."""
