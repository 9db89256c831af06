"""Everything that touches wasmtime-py lives here, so a wasmtime upgrade touches one file.

Host functions are registered through the C API's *unchecked* path
(``wasmtime_linker_define_func_unchecked``): arguments arrive as raw slots, which costs
about 2 µs per call instead of 15-20 µs through ``Linker.define_func``'s ``Val``
conversion (measured by ``benchmarks/hostcall.py`` on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime._ffi import dll as _dll

WASMTIME_VERSION: str = getattr(wasmtime, "__version__", "unknown")

#: A host function takes the call's integer arguments (unsigned) and returns its result.
HostFunction = Callable[..., Any]

_TICK_SECONDS = 0.01

# The raw argument/result slots, seen as uint32 so reading an argument is one index.
_Callback = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t
)
_Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_DeadlineCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_NO_FINALIZER = _Finalizer(0)
# Own prototypes (not wasmtime-py's) so the data pointer comes back as a plain int.
_MEMORY_ARGS = (ctypes.POINTER(ffi.wasmtime_context_t), ctypes.POINTER(ffi.wasmtime_memory_t))
_MEMORY_DATA = ctypes.CFUNCTYPE(ctypes.c_void_p, *_MEMORY_ARGS)(("wasmtime_memory_data", _dll))
_MEMORY_SIZE = ctypes.CFUNCTYPE(ctypes.c_size_t, *_MEMORY_ARGS)(("wasmtime_memory_data_size", _dll))
_DEFINE_UNCHECKED = ctypes.CFUNCTYPE(
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_void_p,
    _Callback,
    ctypes.c_void_p,
    ctypes.c_void_p,
)(("wasmtime_linker_define_func_unchecked", _dll))


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
    """Advances every engine's epoch every 10 ms while any guest executes wasm code.

    Each store traps only when its own deadline callback says so (see ``Store``), so one
    shared clock serves ``stop()`` and time limits for every instance. A guest blocked in a
    host call (``paused()``) needs no ticks, so an idle server costs no CPU.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wasmhost-epoch", daemon=True)
                self._thread.start()
            self._cond.notify()

    def release(self) -> None:
        with self._cond:
            self._active -= 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No ticks needed for this guest meanwhile: it is blocked in a host call."""
        self.release()
        try:
            yield
        finally:
            self.acquire()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._active:
                    cond.wait()
            time.sleep(_TICK_SECONDS)
            for engine in list(_ENGINES.values()):
                engine.increment_epoch()


_TICKER = _Ticker()
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


# --- stores, instances, host calls ------------------------------------------------------


class HostCalls:
    """The host functions of one instance, registered in a linker through the unchecked path.

    An exception raised by a host function becomes a wasm trap; the exception itself is
    kept in ``pending`` so the caller of the guest can re-raise or interpret it.
    """

    def __init__(self) -> None:
        self.pending: BaseException | None = None
        self._keep: list[Any] = []
        self._counters: dict[str, list[int]] = {}

    def counts(self) -> dict[str, int]:
        """How many times the guest called each host function so far."""
        return {name: cell[0] for name, cell in self._counters.items() if cell[0]}

    def callback(self, func: HostFunction, sig: Signature) -> Any:
        """Wrap ``func`` (unsigned ints in, an int or None out) as an unchecked callback.

        Each raw slot is 16 bytes; seen as ``uint32[]`` an i32 argument is at ``4*i`` and
        an i64 at ``4*i`` (low) and ``4*i+1`` (high). Results go to slot 0.
        """
        slots = [4 * i for i in range(len(sig.params))]
        wide = [4 * i for i, c in enumerate(sig.params) if c == "I"]
        has_result = bool(sig.results)
        calls = self
        count = self._counters.setdefault(func.__name__, [0])

        def trampoline(_env: int, _caller: int, raw: Any, _n: int) -> int:
            count[0] += 1
            try:
                args = [raw[k] for k in slots]
                for k in wide:
                    args[k >> 2] |= raw[k + 1] << 32
                result = func(*args)
                if has_result:
                    raw[0] = result
                return 0
            except BaseException as exc:  # noqa: BLE001 - every error must become a trap
                calls.pending = exc
                text = f"host function {func.__name__} raised {type(exc).__name__}".encode()
                trap = ffi.wasmtime_trap_new(ctypes.create_string_buffer(text), len(text))
                return ctypes.cast(trap, ctypes.c_void_p).value or 0

        cb = _Callback(trampoline)
        self._keep.append(cb)
        return cb

    def take_pending(self) -> BaseException | None:
        exc, self.pending = self.pending, None
        return exc


class Store:
    """A wasmtime store with limits and an interruption hook polled on every epoch tick."""

    def __init__(self, fuel: int | None, max_memory: int | None, should_stop: Callable[[], str | None]) -> None:
        self.engine = engine(fuel is not None)
        self.store = wasmtime.Store(self.engine)
        if fuel is not None:
            self.store.set_fuel(fuel)
        if max_memory is not None:
            self.store.set_limits(memory_size=max_memory)
        self._should_stop = should_stop
        self._deadline_cb = _DeadlineCallback(self._on_deadline)
        ffi.wasmtime_store_epoch_deadline_callback(self.store.ptr(), self._deadline_cb, None, _NO_FINALIZER)
        self.store.set_epoch_deadline(1)
        self.context = self.store._context()

    def _on_deadline(self, _ctx: Any, _env: Any, delta: Any, kind: Any) -> int:
        reason = self._should_stop()
        if reason is not None:
            text = reason.encode()
            err = ffi.wasmtime_error_new(ctypes.create_string_buffer(text))
            return ctypes.cast(err, ctypes.c_void_p).value or 0
        delta[0] = 1
        kind[0] = 0  # continue
        return 0

    def instantiate(
        self, module: wasmtime.Module, host: HostCalls, funcs: dict[tuple[str, str], tuple[HostFunction, Signature]]
    ) -> wasmtime.Instance:
        linker = wasmtime.Linker(self.engine)
        for (mod, name), (func, sig) in funcs.items():
            mb, nb = mod.encode(), name.encode()
            functype = sig.functype()  # must outlive the call: its __del__ frees the C type
            err = _DEFINE_UNCHECKED(
                ctypes.cast(linker.ptr(), ctypes.c_void_p),
                mb,
                len(mb),
                nb,
                len(nb),
                ctypes.cast(functype.ptr(), ctypes.c_void_p),
                host.callback(func, sig),
                None,
                None,
            )
            if err:
                raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
        return linker.instantiate(self.store, module)

    def memory_locator(self, instance: wasmtime.Instance) -> Callable[[], tuple[int, int]] | None:
        """A function returning the (address, size) of the instance's exported memory now."""
        mem = instance.exports(self.store).get("memory")
        if not isinstance(mem, wasmtime.Memory):
            return None
        raw = ctypes.byref(mem._memory)
        ctx = self.context
        data, size = _MEMORY_DATA, _MEMORY_SIZE

        def locate() -> tuple[int, int]:
            return data(ctx, raw) or 0, size(ctx, raw)

        return locate

    def call(self, func: wasmtime.Func, *args: float) -> Any:
        _TICKER.acquire()
        try:
            return func(self.store, *args)
        finally:
            _TICKER.release()

    def exported_func(self, instance: wasmtime.Instance, name: str) -> wasmtime.Func | None:
        item = instance.exports(self.store).get(name)
        return item if isinstance(item, wasmtime.Func) else None

    def close(self) -> None:
        self.store.close()


#: Wrap a blocking wait of a guest thread in this: the epoch clock need not tick for it.
blocked = _TICKER.paused

GuestError: tuple[type[Exception], ...] = (wasmtime.Trap, wasmtime.WasmtimeError)
