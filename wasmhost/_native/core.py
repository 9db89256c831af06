"""Engines, modules, signatures and traps: the synchronous side of wasmtime-py.

Modules are compiled per engine (with or without fuel metering); every engine runs guests
asynchronously (see ``fiber``) and is interrupted by one shared epoch ticker.
"""

from __future__ import annotations

import ctypes
import resource
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

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
_ENGINES: dict[tuple[bool, bool], wasmtime.Engine] = {}
_ENGINES_LOCK = threading.Lock()

#: The pooled engines give components served with a fresh instance per request a few
#: resident slots (``RESIDENT_INSTANCES`` at once, process-wide; the rest are allocated on
#: demand). A slot stays mapped, so an instance costs no mmap/munmap, and on release the first
#: ``linear_memory_keep_resident`` bytes of each memory are reset by copying the image back, not
#: by ``madvise``: the pages a request writes stay resident for the next. For a componentize-py
#: guest that removes ~320 of ~330 page faults a request (benchmarks/README.md), and costs up to
#: that many bytes of resident memory per slot. Counts per component are generous, because a
#: component over them cannot be loaded into the pooled engine at all.
RESIDENT_INSTANCES = 4
_POOL_COUNTS = {  # uint32_t settings
    "total_component_instances": RESIDENT_INSTANCES,
    "total_core_instances": RESIDENT_INSTANCES * 64,
    "total_memories": RESIDENT_INSTANCES * 8,
    "total_tables": RESIDENT_INSTANCES * 8,
    "total_stacks": RESIDENT_INSTANCES,
    "max_core_instances_per_component": 200,
    "max_memories_per_component": 50,
    "max_tables_per_component": 50,
}
_POOL_SIZES = {"linear_memory_keep_resident": 16 << 20}  # size_t settings
_POOL_NEW = ctypes.CFUNCTYPE(ctypes.c_void_p)(("wasmtime_pooling_allocation_config_new", _dll))
_POOL_DELETE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(("wasmtime_pooling_allocation_config_delete", _dll))
_POOL_USE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(("wasmtime_pooling_allocation_strategy_set", _dll))


def _pool_setter(name: str, value_type: type) -> Callable[[int, int], None]:
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, value_type)
    return cast(Callable[[int, int], None], proto((f"wasmtime_pooling_allocation_config_{name}_set", _dll)))


def _config(fuel: bool, pooled: bool) -> wasmtime.Config:
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
    if pooled:
        pool = _POOL_NEW()
        try:
            for name, count in _POOL_COUNTS.items():
                _pool_setter(name, ctypes.c_uint32)(pool, count)
            for name, size in _POOL_SIZES.items():
                _pool_setter(name, ctypes.c_size_t)(pool, size)
            _POOL_USE(ctypes.cast(config.ptr(), ctypes.c_void_p), pool)
        finally:
            _POOL_DELETE(pool)
    return config


def pooling_refused() -> str | None:
    """Why this process cannot have a pooled engine, or None. The pool reserves its address
    space when the engine is made, and Wasmtime's C API aborts the process if that fails, so
    an address-space limit (``ulimit -v``) must be seen before."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    return f"an address-space limit (ulimit -v {limit // 1024}) leaves no room for the pooling allocator"


def engine(fuel: bool = False, pooled: bool = False) -> wasmtime.Engine:
    """The process-wide engine for a configuration (modules are compiled per engine);
    ``pooled``: the pooling allocator's resident slots (above; ask ``pooling_refused`` first)."""
    with _ENGINES_LOCK:
        found = _ENGINES.get((fuel, pooled))
        if found is None:
            found = _ENGINES[fuel, pooled] = wasmtime.Engine(_config(fuel, pooled))
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


def compile_module(wasm: bytes, fuel: bool, pooled: bool = False) -> wasmtime.Module:
    return wasmtime.Module(engine(fuel, pooled), wasm)


def wat2wasm(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def serialize(module: wasmtime.Module) -> bytes:
    return bytes(module.serialize())


def deserialize(data: bytes, fuel: bool, pooled: bool = False) -> wasmtime.Module:
    return wasmtime.Module.deserialize(engine(fuel, pooled), data)


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
