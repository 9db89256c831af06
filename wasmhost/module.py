"""A compiled WebAssembly module: validation with clear errors, introspection, code cache."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

from . import _native
from .cache import CompileCache
from .errors import ModuleError
from .wasi import linking
from .wasi.preview1 import FUNCTIONS
from .wasi.sockets import SOCKET_FUNCTIONS

_MAGIC = b"\0asm"
_CORE_VERSION = b"\x01\0\0\0"
_COMPONENT_LAYER = b"\x01\0"
#: Imports only WasmEdge's socket extension has (preview1 itself has sock_accept, sock_recv,
#: sock_send and sock_shutdown): a command importing one is a socket server.
_WASMEDGE_ONLY = frozenset(name for name, _, _ in SOCKET_FUNCTIONS) - {
    "sock_accept", "sock_recv", "sock_send", "sock_shutdown"
} | {"epoll_oneoff"}  # fmt: skip


class GuestKind(enum.Enum):
    """What a module is for, judged from its exports and imports."""

    COMMAND = "command"  # exports _start: runs to completion
    SOCKET_SERVER = "socket-server"  # a command that imports WasmEdge's socket functions
    REACTOR = "reactor"  # no _start: a library whose exports are called


class Module:
    """A validated, compiled module. Compiled code is cached on disk between runs."""

    def __init__(
        self, source: str | os.PathLike[str] | bytes, *, name: str | None = None, cache: CompileCache | None = None
    ) -> None:
        if isinstance(source, bytes):
            self.name = name or "<bytes>"
            wasm = source
        else:
            path = Path(source)
            self.name = name or str(path)
            wasm = _read(path)
        self.wasm = _check_header(self.name, wasm)
        self._cache = cache if cache is not None else CompileCache()
        self._compiled: dict[bool, Any] = {}
        self.cache_hit = False
        compiled = self.compiled(fuel=False)
        self.imports: list[_native.Import] = _native.imports_of(compiled)
        self.exports: dict[str, str] = _native.exports_of(compiled)

    def compiled(self, fuel: bool) -> Any:
        """The wasmtime module for the engine with or without fuel metering."""
        found = self._compiled.get(fuel)
        if found is None:
            found = self._compiled[fuel] = self._load(fuel)
        return found

    def _load(self, fuel: bool) -> Any:
        key = _native.engine_fingerprint(fuel)
        artifact = self._cache.load(self.wasm, key)
        if artifact is not None:
            try:
                module = _native.deserialize(artifact, fuel)
                self.cache_hit = True
                return module
            except _native.GuestError:
                self._cache.discard(self.wasm, key)
        try:
            module = _native.compile_module(self.wasm, fuel)
        except _native.GuestError as exc:
            raise ModuleError(f"{self.name}: invalid module: {_first_line(exc)}") from None
        self._cache.store(self.wasm, key, _native.serialize(module))
        return module

    def unknown_imports(self) -> list[_native.Import]:
        """Imports wasmhost does not provide: instantiating would fail with ``LinkError``."""
        return linking.unknown(self.imports, [*FUNCTIONS, *SOCKET_FUNCTIONS])

    @property
    def kind(self) -> GuestKind:
        if self.exports.get("_start") != "func":
            return GuestKind.REACTOR
        if any(i.name in _WASMEDGE_ONLY for i in self.imports):
            return GuestKind.SOCKET_SERVER
        return GuestKind.COMMAND

    def __repr__(self) -> str:
        return f"<Module {self.name} {self.kind.value}>"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModuleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModuleError(f"{path}: is a directory, not a module") from None
    except OSError as exc:
        raise ModuleError(f"{path}: cannot read: {exc.strerror}") from None


def header_problem(head: bytes, allow_component: bool = False) -> str | None:
    """Why these first bytes are not a core WebAssembly module (or a component, when
    allowed: OCI packaging carries both), or None when they are."""
    if head and len(head) < 8 and _MAGIC.startswith(head[:4]):
        return f"truncated WebAssembly module ({len(head)} bytes)"
    if head[:4] != _MAGIC:
        return "not a WebAssembly module (bad magic)"
    if head[4:8] == _CORE_VERSION:
        return None
    if head[6:8] == _COMPONENT_LAYER:
        if allow_component:
            return None
        return "is a WebAssembly component, not a core module (wasmhost runs core modules)"
    return f"unsupported WebAssembly version {head[4:8].hex()}"


def _check_header(name: str, wasm: bytes) -> bytes:
    if wasm[:1] == b"(" or (wasm.lstrip()[:1] == b"(" and wasm[:4] != _MAGIC):
        try:
            return _native.wat2wasm(wasm.decode())
        except (UnicodeDecodeError, *_native.GuestError) as exc:  # type: ignore[misc]
            raise ModuleError(f"{name}: invalid text module: {_first_line(exc)}") from None
    problem = header_problem(wasm[:8])
    if problem:
        raise ModuleError(f"{name}: {problem}")
    return wasm


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
