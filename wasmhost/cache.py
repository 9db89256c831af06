"""On-disk cache of compiled modules, so a second start does not recompile.

Key: sha256 of the wasm bytes plus the engine fingerprint (wasmtime version and engine
settings). Writes are atomic (temp file + rename), so concurrent processes never see a
partial entry; an entry wasmtime refuses to load is deleted and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from ._files import atomic_write


def default_dir() -> Path:
    override = os.environ.get("WASMHOST_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wasmhost"


class CompileCache:
    """Compiled artifacts under ``directory/compiled/``; ``enabled=False`` bypasses it."""

    def __init__(self, directory: Path | None = None, enabled: bool = True) -> None:
        self.directory = (directory or default_dir()) / "compiled"
        self.enabled = enabled and os.environ.get("WASMHOST_NO_CACHE", "") == ""

    def path(self, wasm: bytes, fingerprint: str) -> Path:
        digest = hashlib.sha256(fingerprint.encode() + b"\0" + wasm).hexdigest()
        return self.directory / digest[:2] / f"{digest}.cwasm"

    def load(self, wasm: bytes, fingerprint: str) -> bytes | None:
        if not self.enabled:
            return None
        try:
            return self.path(wasm, fingerprint).read_bytes()
        except OSError:
            return None

    def store(self, wasm: bytes, fingerprint: str, artifact: bytes) -> None:
        """Save an artifact; a read-only or full cache directory is not an error."""
        if not self.enabled:
            return
        with contextlib.suppress(OSError):
            atomic_write(self.path(wasm, fingerprint), artifact)

    def discard(self, wasm: bytes, fingerprint: str) -> None:
        with contextlib.suppress(OSError):
            self.path(wasm, fingerprint).unlink()
