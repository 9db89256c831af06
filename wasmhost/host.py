"""What a guest may use and how much: args, environment, directories, stdio, limits.

Frozen attrs values: a ``Host`` can be shared by many instances and reused safely.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias

import attrs

from .errors import ConfigError
from .net.policy import Network
from .wasi.fdtable import MAX_FDS

#: Where a standard stream goes: ``"inherit"`` the host process's, ``None`` nowhere,
#: ``bytes`` (stdin only) fixed input, a ``Path`` a file, a callable gets each write.
Stdio: TypeAlias = Literal["inherit"] | bytes | Path | Callable[[bytes], object] | None


def _positive(name: str) -> Callable[[object, Any, float | None], None]:
    def check(_inst: object, _attr: Any, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ConfigError(f"{name}: must be positive, got {value}")

    return check


@attrs.frozen
class Preopen:
    """A host directory the guest sees at ``guest`` (e.g. ``/data`` or ``.``)."""

    guest: str
    host: Path = attrs.field(converter=Path)
    read_only: bool = False

    @classmethod
    def parse(cls, spec: str) -> Preopen:
        """WasmEdge's ``--dir`` forms: ``PATH``, ``GUEST:HOST``, ``GUEST:HOST:readonly``."""
        parts = spec.split(":")
        read_only = parts[-1] == "readonly" and len(parts) > 1
        if read_only:
            parts = parts[:-1]
        if len(parts) == 1:
            return cls(parts[0], Path(parts[0]), read_only)
        if len(parts) == 2 and all(parts):
            return cls(parts[0], Path(parts[1]), read_only)
        raise ConfigError(f"--dir {spec}: expected PATH or GUEST:HOST[:readonly]")

    def check(self) -> None:
        if not self.host.is_dir():
            reason = "does not exist" if not self.host.exists() else "is not a directory"
            raise ConfigError(f"{self.host}: preopened directory {reason}")


@attrs.frozen
class Limits:
    """Resource limits: linear memory bytes, wall-clock seconds, wasm fuel units, and open
    descriptors (stdio and preopens included; one more gets ``MFILE``, as ``RLIMIT_NOFILE`` does)."""

    memory: int | None = attrs.field(default=None, validator=_positive("memory limit"))
    timeout: float | None = attrs.field(default=None, validator=_positive("timeout"))
    fuel: int | None = attrs.field(default=None, validator=_positive("fuel"))
    max_fds: int = attrs.field(default=MAX_FDS, validator=_positive("descriptor limit"))


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _preopens(value: Iterable[Preopen]) -> tuple[Preopen, ...]:
    return tuple(value)


def _env(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    pairs = tuple(value.items() if isinstance(value, Mapping) else value)
    for key, _ in pairs:
        if not key or "=" in key or "\0" in key:
            raise ConfigError(f"environment variable name {key!r}: must be non-empty without '=' or NUL")
    return pairs


@attrs.frozen
class Host:
    """The capabilities and limits granted to a guest."""

    args: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_env)
    preopens: tuple[Preopen, ...] = attrs.field(default=(), converter=_preopens)
    stdin: Stdio = "inherit"
    stdout: Stdio = "inherit"
    stderr: Stdio = "inherit"
    limits: Limits = attrs.field(factory=Limits)
    network: Network = attrs.field(factory=Network)
    #: Define imports nothing provides as functions that trap when called (a guest that
    #: imports e.g. WasmEdge's TLS plugin but never calls it still starts).
    trap_unknown_imports: bool = False

    def __attrs_post_init__(self) -> None:
        needed = 3 + len(self.preopens)
        if needed > self.limits.max_fds:
            raise ConfigError(f"descriptor limit {self.limits.max_fds}: stdio and preopens alone take {needed}")

    @staticmethod
    def parse_env(spec: str) -> tuple[str, str]:
        """``K=V`` as given to ``--env``; ``K`` alone takes the host's value."""
        key, sep, value = spec.partition("=")
        if not sep:
            if key not in os.environ:
                raise ConfigError(f"--env {spec}: expected KEY=VALUE")
            value = os.environ[key]
        return key, value
