"""Every call into wasmtime-py and Wasmtime's C API lives in this package, so a wasmtime
upgrade touches one place: ``core`` (engines, modules, traps), ``fiber`` (stores whose
calls run as fibers driven by the event loop, and host functions), ``sockio`` (sock_recv and
sock_send in C when they need no wait, before their Python functions) and ``component`` (the
component model: linker, values, instances; imported from there, not re-exported here)."""

from .core import (
    WASMTIME_VERSION,
    GuestError,
    Import,
    Signature,
    TrapInfo,
    compile_module,
    describe,
    deserialize,
    engine_fingerprint,
    exports_of,
    imports_of,
    serialize,
    wat2wasm,
)
from .fiber import HostFunction, Store

__all__ = [
    "WASMTIME_VERSION",
    "GuestError",
    "HostFunction",
    "Import",
    "Signature",
    "Store",
    "TrapInfo",
    "compile_module",
    "describe",
    "deserialize",
    "engine_fingerprint",
    "exports_of",
    "imports_of",
    "serialize",
    "wat2wasm",
]
