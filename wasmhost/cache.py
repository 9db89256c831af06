"""On-disk cache of compiled modules, so a second start does not recompile.

Key: sha256 of the wasm bytes plus the engine fingerprint (wasmtime version and engine
settings). Writes are atomic (temp file + rename), so concurrent processes never see a
partial entry; an entry wasmtime refuses to load is deleted and rebuilt.

Entries are native code that wasmtime maps and runs without checking it, so the cache is
trusted the way ssh trusts its keys: every level, from the cache directory down to the entry,
must belong to this user (or root) and be writable by no one else. Anything else is refused
with a warning, and the module is compiled afresh without the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
from pathlib import Path

from ._files import atomic_write

log = logging.getLogger("wasmhost")

#: (path, reason) pairs already warned about: one warning per process, not one per load.
_warned: set[tuple[str, str]] = set()


def default_dir() -> Path:
    override = os.environ.get("WASMHOST_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wasmhost"


def _untrusted(status: os.stat_result) -> str | None:
    """Why a cache level with this (l)stat may hold someone else's code, if it may."""
    if stat.S_ISLNK(status.st_mode):
        return "a symbolic link"
    if status.st_uid not in (os.geteuid(), 0):
        return f"owned by uid {status.st_uid}, not by uid {os.geteuid()}"
    writable = [who for who, bit in (("group", stat.S_IWGRP), ("world", stat.S_IWOTH)) if status.st_mode & bit]
    if writable:
        return f"{'- and '.join(writable)}-writable (mode {stat.S_IMODE(status.st_mode):04o})"
    return None


def _refuse(path: Path, reason: str) -> None:
    if (str(path), reason) not in _warned:
        _warned.add((str(path), reason))
        log.warning("%s: %s; compile cache not trusted, compiling without it", path, reason)


class CompileCache:
    """Compiled artifacts under ``directory/compiled/``; ``enabled=False`` bypasses it."""

    def __init__(self, directory: Path | None = None, enabled: bool = True) -> None:
        self.root = directory or default_dir()
        self.directory = self.root / "compiled"
        self.enabled = enabled and os.environ.get("WASMHOST_NO_CACHE", "") == ""

    def path(self, wasm: bytes, fingerprint: str) -> Path:
        digest = hashlib.sha256(fingerprint.encode() + b"\0" + wasm).hexdigest()
        return self.directory / digest[:2] / f"{digest}.cwasm"

    def load(self, wasm: bytes, fingerprint: str) -> bytes | None:
        """The cached artifact, if there is one and every level down to it is trusted."""
        path = self.path(wasm, fingerprint)
        if not self.enabled or self._trust(path) is not True:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def store(self, wasm: bytes, fingerprint: str, artifact: bytes) -> None:
        """Save an artifact; a read-only, full or untrusted cache directory is not an error."""
        if not self.enabled:
            return
        path = self.path(wasm, fingerprint)
        with contextlib.suppress(OSError):
            self.root.parent.mkdir(parents=True, exist_ok=True)
            if self._trust(path, create=True) is not False:
                atomic_write(path, artifact)

    def discard(self, wasm: bytes, fingerprint: str) -> None:
        with contextlib.suppress(OSError):
            self.path(wasm, fingerprint).unlink()

    def _levels(self, entry: Path) -> list[Path]:
        """The cache root, ``compiled/``, the 2-hex subdirectory and the entry itself."""
        return [self.root, self.directory, entry.parent, entry]

    def _trust(self, entry: Path, *, create: bool = False) -> bool | None:
        """True when every level down to `entry` is trusted, None when one is missing, and
        False (after a warning, once) when one is not trusted. Directories may be symbolic
        links to trusted directories; the entry itself may not be a link. With `create`,
        missing directories are made private to this user (0700) below trusted ones."""
        for level in self._levels(entry):
            if create and level != entry:
                level.mkdir(mode=0o700, exist_ok=True)
            try:
                status = os.lstat(level) if level == entry else os.stat(level)
            except OSError:
                return None
            reason = _untrusted(status)
            if reason:
                _refuse(level, reason)
                return False
        return True
