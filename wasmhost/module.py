"""A compiled WebAssembly module: validation with clear errors, introspection, code cache."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

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
    HTTP_COMPONENT = "http-component"  # a component exporting wasi:http/incoming-handler: serves requests
    COMPONENT = "component"  # any other component


#: The interface a wasi:http component exports (any 0.2.x version): ``handle(request, response-out)``.
_HTTP_HANDLER = "wasi:http/incoming-handler@0.2."


class _Codec(NamedTuple):
    """How one format (core module or component) is compiled, and stored in the compile cache."""

    compile: Callable[[bytes, bool, bool], Any]  # (wasm, fuel, pooled)
    serialize: Callable[[Any], bytes]
    deserialize: Callable[[bytes, bool, bool], Any]


_CORE = _Codec(_native.compile_module, _native.serialize, _native.deserialize)


class Module:
    """A validated, compiled module or component. Compiled code is cached on disk between runs.

    For a component, ``imports`` and ``export_items`` name each function, resource and type by the
    interface that holds it (``Import.module``); ``exports`` maps each top-level export to its kind.
    """

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
        self.is_component = self.wasm[6:8] == _COMPONENT_LAYER
        self._codec = _CORE
        if self.is_component:  # wasmtime.component costs a core module's start-up 10-15 ms: only on use
            from ._native import component

            self._codec = _Codec(component.compile_component, component.serialize, component.deserialize)
        self._cache = cache if cache is not None else CompileCache()
        self._compiled: dict[tuple[bool, bool], Any] = {}
        self.cache_hit = False
        compiled = self.compiled(fuel=False)
        self.imports: list[_native.Import]
        self.export_items: list[_native.Import]
        if self.is_component:
            self.imports = component.imports_of(compiled, fuel=False)
            self.export_items = component.exports_of(compiled, fuel=False)
            self.exports = {i.module or i.name: "instance" if i.module else i.kind for i in self.export_items}
        else:
            self.imports = _native.imports_of(compiled)
            self.exports = _native.exports_of(compiled)
            self.export_items = [_native.Import("", name, kind, None) for name, kind in self.exports.items()]

    def compiled(self, fuel: bool, pooled: bool = False) -> Any:
        """The wasmtime module for the engine with or without fuel metering, and with or without
        the pooling allocator (``_native.core.engine``)."""
        found = self._compiled.get((fuel, pooled))
        if found is None:
            found = self._compiled[fuel, pooled] = self._load(fuel, pooled)
        return found

    def _load(self, fuel: bool, pooled: bool) -> Any:
        if pooled:  # the same code, loaded into the pooled engine: no second compile
            return self._codec.deserialize(self._codec.serialize(self.compiled(fuel)), fuel, True)
        key = _native.engine_fingerprint(fuel)
        artifact = self._cache.load(self.wasm, key)
        if artifact is not None:
            try:
                module = self._codec.deserialize(artifact, fuel, pooled)
                self.cache_hit = True
                return module
            except _native.GuestError:
                self._cache.discard(self.wasm, key)
        try:
            module = self._codec.compile(self.wasm, fuel, pooled)
        except _native.GuestError as exc:
            what = "component" if self.is_component else "module"
            raise ModuleError(f"{self.name}: invalid {what}: {_first_line(exc)}") from None
        self._cache.store(self.wasm, key, self._codec.serialize(module))
        return module

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without compiled code (worker processes load it from the cache)."""
        return {**self.__dict__, "_compiled": {}}

    def unknown_imports(self) -> list[_native.Import]:
        """Imports wasmhost does not provide: a core module importing one does not link
        (``LinkError``). A component always links (see ``wasip2.linking.unprovided``)."""
        return [] if self.is_component else linking.unknown(self.imports, [*FUNCTIONS, *SOCKET_FUNCTIONS])

    @property
    def kind(self) -> GuestKind:
        if self.is_component:
            http = any(name.startswith(_HTTP_HANDLER) and kind == "instance" for name, kind in self.exports.items())
            return GuestKind.HTTP_COMPONENT if http else GuestKind.COMPONENT
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


def header_problem(head: bytes) -> str | None:
    """Why these first bytes are neither a core WebAssembly module nor a component, or None."""
    if head and len(head) < 8 and _MAGIC.startswith(head[:4]):
        return f"truncated WebAssembly module ({len(head)} bytes)"
    if head[:4] != _MAGIC:
        return "not a WebAssembly module (bad magic)"
    if head[4:8] == _CORE_VERSION:
        return None
    if head[6:8] == _COMPONENT_LAYER:
        return None
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
