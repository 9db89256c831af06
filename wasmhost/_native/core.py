"""Engines, modules, signatures and traps: the synchronous side of wasmtime-py.

Modules are compiled per engine (with or without fuel metering); every engine runs guests
asynchronously (see ``fiber``) and is interrupted by one shared epoch ticker.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

import wasmtime
from wasmtime._ffi import dll as _dll

WASMTIME_VERSION: str = getattr(wasmtime, "__version__", "unknown")

_TICK_SECONDS = 0.005
#: The C stack a guest's fiber gets. Host functions (Python) run on it too, and Python 3.13
#: overflows the 2 MiB default at about 3,000 levels of recursion; pages are committed only
#: when touched, so a large reservation costs address space, not memory.
FIBER_STACK_BYTES = 64 << 20
_ASYNC_STACK_SIZE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(
    ("wasmtime_config_async_stack_size_set", _dll)
)
_CONCURRENCY_SUPPORT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_bool)(
    ("wasmtime_config_concurrency_support_set", _dll)
)


class Signature(NamedTuple):
    """A host function's wasm type: ``"i"`` = i32, ``"I"`` = i64, per parameter/result."""

    params: str
    results: str

    @classmethod
    def of(cls, ty: wasmtime.FuncType) -> Signature:
        return cls(_type_codes(ty.params), _type_codes(ty.results))

    def functype(self) -> wasmtime.FuncType:
        code = {"i": wasmtime.ValType.i32(), "I": wasmtime.ValType.i64()}
        return wasmtime.FuncType([code[c] for c in self.params], [code[c] for c in self.results])


def _type_codes(types: Sequence[wasmtime.ValType]) -> str:
    names = {"i32": "i", "i64": "I", "f32": "f", "f64": "F"}
    return "".join(names.get(str(t), "?") for t in types)


# --- engines and the epoch ticker -------------------------------------------------------


class _Ticker:
    """Advances every engine's epoch every 5 ms while any guest executes wasm code.

    Each store decides on its own tick what happens (yield to the loop, or trap when
    stopped; see ``fiber.Store``), so one clock serves every instance. A guest suspended
    on the loop needs no ticks, so an idle server costs no CPU. The clock is a thread
    because a guest spinning in wasm holds the loop's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._active = 0
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        with self._lock:
            self._active += 1
            if self._active == 1 and not self._wanted.is_set():  # set() alone costs a notify
                self._wanted.set()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="wasmhost-epoch", daemon=True)
                    self._thread.start()

    def release(self) -> None:
        with self._lock:
            self._active -= 1

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            time.sleep(_TICK_SECONDS)
            with self._lock:
                if not self._active:
                    self._wanted.clear()
                    continue
            for engine in list(_ENGINES.values()):
                engine.increment_epoch()


TICKER = _Ticker()
_ENGINES: dict[bool, wasmtime.Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine(fuel: bool = False) -> wasmtime.Engine:
    """The process-wide engine for a configuration (modules are compiled per engine)."""
    with _ENGINES_LOCK:
        found = _ENGINES.get(fuel)
        if found is None:
            config = wasmtime.Config()
            config.epoch_interruption = True
            config.consume_fuel = fuel
            # Linear memory never moves, so a view of it stays valid as it grows.
            config.memory_may_move = False
            _ASYNC_STACK_SIZE(ctypes.cast(config.ptr(), ctypes.c_void_p), FIBER_STACK_BYTES)
            # Off: with it, Wasmtime 50 traps ("deferred host scope has no call context") before
            # calling a host function given two or more borrows (tcp start-bind, poll of two
            # pollables). Guests run on fibers, which need only async support.
            _CONCURRENCY_SUPPORT(ctypes.cast(config.ptr(), ctypes.c_void_p), False)
            found = _ENGINES[fuel] = wasmtime.Engine(config)
        return found


def engine_fingerprint(fuel: bool) -> str:
    """What compiled code depends on, besides the wasm bytes (part of the cache key)."""
    return f"wasmtime-{WASMTIME_VERSION}/epoch/fuel={int(fuel)}"


# --- modules ----------------------------------------------------------------------------


class Import(NamedTuple):
    module: str
    name: str
    kind: str  # "func", "memory", "table", "global", "tag"
    signature: Signature | None


def compile_module(wasm: bytes, fuel: bool) -> wasmtime.Module:
    return wasmtime.Module(engine(fuel), wasm)


def wat2wasm(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def serialize(module: wasmtime.Module) -> bytes:
    return bytes(module.serialize())


def deserialize(data: bytes, fuel: bool) -> wasmtime.Module:
    return wasmtime.Module.deserialize(engine(fuel), data)


def imports_of(module: wasmtime.Module) -> list[Import]:
    found = []
    for imp in module.imports:
        ty = imp.type
        if isinstance(ty, wasmtime.FuncType):
            found.append(Import(imp.module, imp.name or "", "func", Signature.of(ty)))
        else:
            found.append(Import(imp.module, imp.name or "", _extern_kind(ty), None))
    return found


def exports_of(module: wasmtime.Module) -> dict[str, str]:
    return {exp.name: _extern_kind(exp.type) for exp in module.exports}


def _extern_kind(ty: object) -> str:
    if isinstance(ty, wasmtime.FuncType):
        return "func"
    if isinstance(ty, wasmtime.MemoryType):
        return "memory"
    if isinstance(ty, wasmtime.TableType):
        return "table"
    if isinstance(ty, wasmtime.GlobalType):
        return "global"
    return "other"


# --- traps ------------------------------------------------------------------------------


class TrapInfo(NamedTuple):
    """What a guest trap looked like: wasmtime's message, the trap kind and the wasm backtrace."""

    message: str
    kind: str | None
    frames: list[str]


def describe(error: Exception) -> TrapInfo:
    """Decode a wasmtime ``Trap``/``WasmtimeError`` raised from a guest call."""
    message = _cause(str(error)) or type(error).__name__
    kind: str | None = None
    frames: list[str] = []
    if isinstance(error, wasmtime.Trap):
        code = error.trap_code
        kind = code.name.lower().replace("_", " ") if code is not None else None
        for frame in error.frames:
            name = frame.func_name or f"<func {frame.func_index}>"
            where = f"{frame.module_name}!" if frame.module_name else ""
            frames.append(f"{where}{name} @ 0x{frame.module_offset:x}")
    return TrapInfo(message, kind, frames)


def _cause(text: str) -> str:
    """The innermost reason in a wasmtime error text (the lines after "Caused by:")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if "Caused by:" in lines:
        lines = lines[lines.index("Caused by:") + 1 :]
    return lines[-1] if lines else ""


GuestError: tuple[type[Exception], ...] = (wasmtime.Trap, wasmtime.WasmtimeError)
