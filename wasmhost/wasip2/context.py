"""The state every WASI 0.2 function of one instance runs against (``Wasi``), and its settings."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import attrs

from ..host import Host, Preopen, Stdio
from ..net.policy import Network
from .table import Table


def _to(stream: BinaryIO) -> Callable[[bytes], None]:
    def emit(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return emit


def _stderr(data: bytes) -> None:
    _to(sys.stderr.buffer)(data)


def _discard(_data: bytes) -> None:
    return None


def _sink(stdio: Stdio, inherited: Callable[[], BinaryIO]) -> Callable[[bytes], None]:
    """Where a guest's stdout or stderr goes, from ``Host.stdout``/``Host.stderr``."""
    if stdio == "inherit":
        return _to(inherited())
    if stdio is None or isinstance(stdio, bytes):
        return _discard
    if isinstance(stdio, Path):
        path = stdio

        def append(data: bytes) -> None:
            with path.open("ab") as file:
                file.write(data)

        return append

    def call(data: bytes) -> None:
        stdio(data)

    return call


@attrs.frozen
class WasiConfig:
    """What a component may see: arguments, environment, preopened directories (as preview1's,
    ``read_only`` enforced), where its stdout/stderr go, and the network policy (outbound
    connections and DNS are denied unless it allows them)."""

    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    preopens: tuple[Preopen, ...] = ()
    stdout: Callable[[bytes], None] = _stderr
    stderr: Callable[[bytes], None] = _stderr
    network: Network = attrs.field(factory=Network)

    @classmethod
    def of(cls, host: Host) -> WasiConfig:
        """The same capabilities a core module gets from ``host`` (stdin is always empty)."""
        return cls(
            args=host.args, env=host.env, preopens=host.preopens, network=host.network,
            stdout=_sink(host.stdout, lambda: sys.stdout.buffer), stderr=_sink(host.stderr, lambda: sys.stderr.buffer),
        )  # fmt: skip


class GuestExit(Exception):
    """The guest called ``wasi:cli/exit.exit``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class TooLarge(Exception):
    """A call asked for more than the host hands out at once: the guest traps with this reason."""


class Wasi:
    """One instance's resources and settings (``_native.component.HostState``)."""

    def __init__(self, config: WasiConfig) -> None:
        self.config = config
        self.table = Table()

    def drop_resource(self, rep: int) -> None:
        self.table.drop(rep)

    def close(self) -> None:
        self.table.close()
