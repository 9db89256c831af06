"""Guests as fibers: every call into wasm is a future that a coroutine on the caller's loop
drives, through Wasmtime's async C API (``wasmtime/async.h``).

A call runs on a fiber (its own C stack) inside ``wasmtime_call_future_poll``. The poll
returns when the call ends, when the epoch ticks (the store yields so the loop can run
other work) or when an async host function waits: host functions written as ``async def``
are stepped like asyncio tasks, and the asyncio future they await is what the driver
awaits before polling again. Host functions that never wait stay plain functions on the
cheaper *unchecked* path (raw argument slots: about 1-2 µs per call, against 7-20 µs
through ``Linker.define_func`` and 2-5 µs for an async function that does not wait; see
``benchmarks/hostcall.py``).

No thread per guest: a thousand suspended guests are a thousand parked futures.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import itertools
import queue
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime._ffi import dll as _dll

from .core import TICKER, Signature, engine
from .sockio import Front

#: A host function takes the call's integer arguments (unsigned) and returns its result,
#: or is a coroutine function doing the same when it may have to wait.
HostFunction = Callable[..., Any]

_U64 = ctypes.POINTER(ctypes.c_uint64)
_VOID = ctypes.c_void_p
_KIND = {"i": 0, "I": 1, "f": 2, "F": 3}
_MASK = {"i": 0xFFFF_FFFF, "I": 0xFFFF_FFFF_FFFF_FFFF}
#: An argument in its 32-byte ``wasmtime_val_t`` (kind at 0, payload at 8; an i32 is the low half).
_PARAM = {"i": "8xI20x", "I": "8xQ16x"}
_FIELD = {"i": "i32", "I": "i64", "f": "f32", "F": "f64"}

# Unchecked host functions: raw slots seen as uint32, so an argument is one index.
_Callback = ctypes.CFUNCTYPE(ctypes.c_size_t, _VOID, _VOID, ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t)
_Finalizer = ctypes.CFUNCTYPE(None, _VOID)
_Continue = ctypes.CFUNCTYPE(ctypes.c_bool, _VOID)


class _Continuation(ctypes.Structure):
    _fields_ = [("callback", _Continue), ("env", _VOID), ("finalizer", _Finalizer)]


_AsyncCallback = ctypes.CFUNCTYPE(
    None, _VOID, _VOID, _VOID, ctypes.c_size_t, _U64, ctypes.c_size_t, ctypes.POINTER(_VOID),
    ctypes.POINTER(_Continuation),
)  # fmt: skip
_DeadlineCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    _VOID,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_DEADLINE_YIELD = 1
_TURNS_PER_YIELD = 3
_NO_FINALIZER = _Finalizer(0)


def _c(name: str, restype: Any, *argtypes: Any) -> Any:
    """Our own prototype of a C function (wasmtime-py's argtypes stay untouched)."""
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, _dll))


_DEFINE_UNCHECKED = _c(
    "wasmtime_linker_define_func_unchecked", _VOID, _VOID, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
    ctypes.c_size_t, _VOID, _Callback, _VOID, _VOID,
)  # fmt: skip
_DEFINE_ASYNC = _c(
    "wasmtime_linker_define_async_func", _VOID, _VOID, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
    ctypes.c_size_t, _VOID, _AsyncCallback, _VOID, _VOID,
)  # fmt: skip
_INSTANTIATE = _c(
    "wasmtime_linker_instantiate_async", _VOID, _VOID, _VOID, _VOID, ctypes.POINTER(ffi.wasmtime_instance_t),
    ctypes.POINTER(_VOID), ctypes.POINTER(_VOID),
)  # fmt: skip
_CALL = _c(
    "wasmtime_func_call_async", _VOID, _VOID, ctypes.POINTER(ffi.wasmtime_func_t), _VOID, ctypes.c_size_t, _VOID,
    ctypes.c_size_t, ctypes.POINTER(_VOID), ctypes.POINTER(_VOID),
)  # fmt: skip
_POLL = _c("wasmtime_call_future_poll", ctypes.c_bool, _VOID)
_DELETE = _c("wasmtime_call_future_delete", None, _VOID)
_MEMORY_ARGS = (ctypes.POINTER(ffi.wasmtime_context_t), ctypes.POINTER(ffi.wasmtime_memory_t))
_MEMORY_DATA = _c("wasmtime_memory_data", _VOID, *_MEMORY_ARGS)
_MEMORY_SIZE = _c("wasmtime_memory_data_size", ctypes.c_size_t, *_MEMORY_ARGS)


def _new_trap(text: str) -> int:
    data = text.encode()
    trap = ffi.wasmtime_trap_new(ctypes.create_string_buffer(data), len(data))
    return ctypes.cast(trap, _VOID).value or 0


# --- suspended host calls -----------------------------------------------------------------


class _Suspended:
    """An async host function waiting on the loop; its coroutine is stepped like a task's.

    ``finish`` writes the coroutine's return value where the caller of the host function
    expects it, ``fail`` turns an exception into the trap or error that ends the guest.
    """

    __slots__ = ("awaiting", "coro", "fail", "finish", "store")

    def __init__(
        self, store: Store, coro: Coroutine[Any, Any, Any], finish: Callable[[Any], None],
        fail: Callable[[BaseException], None],
    ) -> None:  # fmt: skip
        self.store = store
        self.coro = coro
        self.finish = finish
        self.fail = fail
        self.awaiting: Any = None

    def step(self) -> bool:
        """Resume the coroutine; True when the host call has ended (result or trap written)."""
        awaiting = self.awaiting
        if awaiting is not None and not awaiting.done():
            self.store.parked = awaiting
            return False
        try:
            awaiting = self.coro.send(None)
        except StopIteration as done:
            value = done.value
        except BaseException as exc:  # noqa: BLE001 - every error must become a trap
            self.fail(exc)
            return True
        else:
            self.awaiting = self.store.parked = _claim(awaiting)
            self.store.suspensions += 1
            return False
        try:
            self.finish(value)
        except BaseException as exc:  # noqa: BLE001 - a result that cannot be written is a trap too
            self.fail(exc)
        return True


def start_host_call(
    store: Store, coro: Coroutine[Any, Any, Any], finish: Callable[[Any], None],
    fail: Callable[[BaseException], None], cont: Any,
) -> None:  # fmt: skip
    """Run an async host function's coroutine until it first waits. If it ends at once, its
    result is written now; if it waits, the continuation ``cont`` (a ``_Continuation``) is
    filled in so that the fiber suspends and ``_resume`` steps the coroutine again once the
    future it awaits is done. Core and component host functions share this."""
    cont.callback = _ready
    try:
        awaiting = coro.send(None)
    except StopIteration as done:
        try:
            finish(done.value)
        except BaseException as exc:  # noqa: BLE001 - a result that cannot be written is a trap too
            fail(exc)
        return
    except BaseException as exc:  # noqa: BLE001 - every error must become a trap
        fail(exc)
        return
    suspend(store, coro, awaiting, finish, fail, cont)


def suspend(
    store: Store, coro: Coroutine[Any, Any, Any], awaiting: Any, finish: Callable[[Any], None],
    fail: Callable[[BaseException], None], cont: Any,
) -> None:  # fmt: skip
    """The host call's coroutine waits for ``awaiting``: park the fiber until it is done."""
    suspended = _Suspended(store, coro, finish, fail)
    suspended.awaiting = store.parked = _claim(awaiting)
    store.suspensions += 1
    key = next(_KEYS)
    _SUSPENDED[key] = suspended
    cont.callback, cont.env, cont.finalizer = _resume, key, _forget


_SUSPENDED: dict[int, _Suspended] = {}
_KEYS = itertools.count(1)


def _claim(awaiting: Any) -> Any:
    """Take a future a coroutine yielded as a task would: the driver then awaits it."""
    if awaiting is not None:
        awaiting._asyncio_future_blocking = False
    return awaiting


def _step(env: int) -> bool:
    return _SUSPENDED[env].step()


def _drop(env: int) -> None:
    suspended = _SUSPENDED.pop(env, None)
    if suspended is not None:
        suspended.coro.close()  # the call was dropped mid-wait: run its cleanups


_resume = _Continue(_step)
_forget = _Finalizer(_drop)
_ready = _Continue(lambda _env: True)


# --- stores -----------------------------------------------------------------------------


class Store:
    """A store whose calls are driven on an asyncio loop, with limits and an interruption
    hook consulted on every epoch tick.

    ``should_stop`` returns a reason to end the guest (it then traps with it) or None.
    An exception raised by a host function becomes a trap; the exception itself is kept
    in ``pending`` so the caller can tell a host failure or an exit from a guest trap.
    ``pooled`` picks the engine with the pooling allocator (components; ``core.engine``).
    """

    def __init__(
        self,
        fuel: int | None,
        max_memory: int | None,
        should_stop: Callable[[], str | None],
        error_result: Callable[[BaseException], int | None] = lambda _exc: None,
        *,
        pooled: bool = False,
    ) -> None:
        self.engine = engine(fuel is not None, pooled)
        self.pooled = pooled
        if pooled:
            _REAPER.adopt()
        self.store = wasmtime.Store(self.engine)
        if fuel is not None:
            self.store.set_fuel(fuel)
        if max_memory is not None:
            self.store.set_limits(memory_size=max_memory)
        self._should_stop = should_stop
        #: An exception a host function raises that is its result, not a failure (an errno).
        self.error_result = error_result
        self._deadline_cb = _DeadlineCallback(self._on_deadline)
        ffi.wasmtime_store_epoch_deadline_callback(self.store.ptr(), self._deadline_cb, None, _NO_FINALIZER)
        self.store.set_epoch_deadline(1)
        self.context = self.store._context()
        self._ctx = ctypes.cast(self.context, _VOID)
        #: The future a suspended host call waits for (None: the guest yielded on a tick).
        self.parked: Any = None
        self.pending: BaseException | None = None
        #: How many times a host call suspended the guest (waited on the loop) so far.
        self.suspensions = 0
        self._keep: list[Any] = []
        self._counters: dict[str, list[int]] = {}
        self._fronts: list[tuple[str, Any]] = []  # (name, C environment) of each fast path

    def _on_deadline(self, _ctx: Any, _env: Any, delta: Any, kind: Any) -> int:
        reason = self._should_stop()
        if reason is not None:
            err = ffi.wasmtime_error_new(ctypes.create_string_buffer(reason.encode()))
            return ctypes.cast(err, _VOID).value or 0
        delta[0] = 1
        kind[0] = _DEADLINE_YIELD
        return 0

    def failed(self, name: str, exc: BaseException) -> int:
        """Record why a host function failed; returns the trap that ends the guest."""
        self.pending = exc
        return _new_trap(f"host function {name} raised {type(exc).__name__}")

    def end_with(self, name: str, exc: BaseException, results: Any, mask: int, trap: Any) -> None:
        """An async host call raised ``exc``: its result (``error_result``), or a trap."""
        code = self.error_result(exc)
        if code is None:
            trap[0] = self.failed(name, exc)
        else:
            _set_result(results, mask, code)

    def take_pending(self) -> BaseException | None:
        exc, self.pending = self.pending, None
        return exc

    def counts(self) -> dict[str, int]:
        """How many times the guest called each host function so far."""
        counts = {name: cell[0] for name, cell in self._counters.items()}
        for name, env in self._fronts:
            counts[name] += env.calls
        return {name: n for name, n in counts.items() if n}

    # --- host functions -------------------------------------------------------------------

    def _unchecked(self, func: HostFunction, sig: Signature) -> Any:
        """``func`` as an unchecked callback. A raw slot is 16 bytes: as ``uint32[]`` an i32
        argument is at ``4*i`` and an i64 at ``4*i`` (low) and ``4*i+1`` (high)."""
        slots = [4 * i for i in range(len(sig.params))]
        wide = [4 * i for i, c in enumerate(sig.params) if c == "I"]
        has_result = bool(sig.results)
        count = self._counters.setdefault(func.__name__, [0])
        store = self

        def trampoline(_env: int, _caller: int, raw: Any, _n: int) -> int:
            count[0] += 1
            try:
                args = [raw[k] for k in slots]
                for k in wide:
                    args[k >> 2] |= raw[k + 1] << 32
                try:
                    result = func(*args)
                except BaseException as exc:
                    result = store.error_result(exc)
                    if result is None:
                        raise
                if has_result:
                    raw[0] = result or 0
                return 0
            except BaseException as exc:  # noqa: BLE001 - every error must become a trap
                return store.failed(func.__name__, exc)

        return _Callback(trampoline)

    def _async(self, func: HostFunction, sig: Signature) -> Any:
        """``func`` (a coroutine function) as an async callback: run until it first waits;
        if it does, the fiber suspends and ``_resume`` steps it once its future is done."""
        params = struct.Struct("<" + "".join(_PARAM[c] for c in sig.params))
        slots = ctypes.c_char * params.size
        result_mask = _MASK[sig.results] if sig.results else 0
        name = func.__name__
        count = self._counters.setdefault(name, [0])
        store = self

        def trampoline(
            _env: int, _caller: int, args: Any, _n: int, results: Any, _m: int, trap: Any, cont: Any
        ) -> None:
            count[0] += 1
            continuation = cont[0]
            continuation.callback = _ready
            try:
                coro = func(*params.unpack_from(slots.from_address(args))) if args else func()
                awaiting = coro.send(None)
            except StopIteration as done:  # the common case: it did not have to wait
                _set_result(results, result_mask, done.value or 0)
                return
            except BaseException as exc:  # noqa: BLE001 - a result, or a trap
                store.end_with(name, exc, results, result_mask, trap)
                return

            def finish(value: int | None) -> None:
                _set_result(results, result_mask, value or 0)

            def fail(exc: BaseException) -> None:
                store.end_with(name, exc, results, result_mask, trap)

            suspend(store, coro, awaiting, finish, fail, continuation)

        return _AsyncCallback(trampoline)

    # --- instantiation and calls ----------------------------------------------------------

    def instantiate(
        self, module: wasmtime.Module, funcs: dict[tuple[str, str], tuple[HostFunction | Front, Signature]]
    ) -> wasmtime.Instance:
        """Link ``funcs`` and instantiate; a start function that waits runs on a private loop."""
        linker = wasmtime.Linker(self.engine)
        for (mod, name), (host, sig) in funcs.items():
            func = host.fallback if isinstance(host, Front) else host
            is_async = inspect.iscoroutinefunction(func)
            callback = self._async(func, sig) if is_async else self._unchecked(func, sig)
            self._keep.append(callback)
            env_ptr = None
            if isinstance(host, Front):  # the C function first, ``callback`` when it declines
                env = host.env(callback)
                self._keep += [env, host]
                self._fronts.append((func.__name__, env))
                env_ptr = ctypes.addressof(env)
                callback = (_AsyncCallback if is_async else _Callback)(host.entry)
            mb, nb = mod.encode(), name.encode()
            functype = sig.functype()  # must outlive the call: its __del__ frees the C type
            define = _DEFINE_ASYNC if is_async else _DEFINE_UNCHECKED
            err = define(ctypes.cast(linker.ptr(), _VOID), mb, len(mb), nb, len(nb),
                         ctypes.cast(functype.ptr(), _VOID), callback, env_ptr, None)  # fmt: skip
            if err:
                raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
        instance = ffi.wasmtime_instance_t()
        trap, error = _VOID(), _VOID()
        future = _INSTANTIATE(ctypes.cast(linker.ptr(), _VOID), self._ctx, ctypes.cast(module.ptr(), _VOID),
                              ctypes.byref(instance), ctypes.byref(trap), ctypes.byref(error))  # fmt: skip
        try:
            if not _POLL(future):
                loop = asyncio.new_event_loop()
                try:
                    loop.run_until_complete(self._drive(future, polled=True))
                finally:
                    loop.close()
        finally:
            _DELETE(future)
        _raise(trap, error)
        return wasmtime.Instance._from_raw(instance)

    async def call(self, func: wasmtime.Func, *args: float) -> Any:
        """Call ``func`` on a fiber driven by the running loop; returns its result(s)."""
        ty = func.type(self.store)
        params, results = [_code(t) for t in ty.params], [_code(t) for t in ty.results]
        if len(args) != len(params):
            raise TypeError(f"expected {len(params)} arguments, got {len(args)}")
        argv = (ffi.wasmtime_val_t * max(1, len(args)))()
        for slot, code, value in zip(argv, params, args, strict=False):  # argv has a slot even for no args
            slot.kind = _KIND[code]
            setattr(slot.of, _FIELD[code], value)
        out = (ffi.wasmtime_val_t * max(1, len(results)))()
        trap, error = _VOID(), _VOID()
        future = _CALL(self._ctx, ctypes.byref(func._func), argv, len(args), out, len(results),
                       ctypes.byref(trap), ctypes.byref(error))  # fmt: skip
        try:
            await self._drive(future)
        finally:
            _DELETE(future)  # cancelled mid-call: drops the fiber, and _forget closes the host call
        _raise(trap, error)
        values = [getattr(slot.of, _FIELD[code]) for slot, code in zip(out, results, strict=False)]
        return None if not values else values[0] if len(values) == 1 else values

    async def _drive(self, future: int, polled: bool = False) -> None:
        TICKER.acquire()
        try:
            while polled or not _POLL(future):
                polled = False
                parked, self.parked = self.parked, None
                if parked is None:
                    # An epoch yield: the guest computed a whole tick. Give the loop a few
                    # turns, so that a timer due now also wakes the task awaiting it (one
                    # turn fires the timer, the next runs the task), not a tick later.
                    for _ in range(_TURNS_PER_YIELD):
                        await asyncio.sleep(0)
                    continue
                TICKER.release()
                try:
                    await parked
                except Exception:  # noqa: BLE001 - the host call sees its future's outcome itself
                    pass
                finally:
                    TICKER.acquire()
        finally:
            TICKER.release()

    # --- exports and memory ---------------------------------------------------------------

    def exported_func(self, instance: wasmtime.Instance, name: str) -> wasmtime.Func | None:
        item = instance.exports(self.store).get(name)
        return item if isinstance(item, wasmtime.Func) else None

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

    def close(self) -> None:
        if self.pooled:  # with what the store's callbacks need, kept alive until it is gone
            _REAPER.delete((self.store, self._deadline_cb, self._keep))
        else:
            self.store.close()


class _Reaper:
    """Deletes pooled stores on one thread of its own, started with the first pooled store.

    Deleting a store whose instance has a resident slot copies the slot's memory image back
    (``core.RESIDENT_INSTANCES``): half a millisecond of ``memcpy`` for a componentize-py guest,
    with the GIL released. Done here, it overlaps the next request on the loop's thread (1.2x
    the requests per second at one connection). Stores allocated on demand are deleted where
    they are closed: their ``munmap`` on another thread slowed the loop's page faults more than
    it saved. A slot is free again only once its store is deleted, so the reaper counts them.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[wasmtime.Store, Any, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._adopted = 0
        self._deleted = 0

    def adopt(self) -> None:
        with self._lock:
            self._adopted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wasmhost-reaper", daemon=True)
                self._thread.start()

    def delete(self, store: tuple[wasmtime.Store, Any, Any]) -> None:
        self._queue.put(store)

    @property
    def alive(self) -> int:
        """Pooled stores not deleted yet: the slots they hold are not free."""
        return self._adopted - self._deleted

    def _run(self) -> None:
        while True:
            self._queue.get()[0].close()
            with self._lock:
                self._deleted += 1


def pooled_stores() -> int:
    """Pooled stores alive in the process, queued for deletion included."""
    return _REAPER.alive


_REAPER = _Reaper()


def _set_result(results: Any, mask: int, value: int) -> None:
    """Write an integer host result into the first ``wasmtime_val_t`` (kind, payload)."""
    if mask:
        results[0] = _KIND["I"] if mask == _MASK["I"] else _KIND["i"]
        results[1] = value & mask


def _code(ty: wasmtime.ValType) -> str:
    code = {"i32": "i", "i64": "I", "f32": "f", "f64": "F"}.get(str(ty))
    if code is None:
        raise TypeError(f"unsupported wasm type {ty} in an exported function's signature")
    return code


def _raise(trap: Any, error: Any) -> None:
    if trap.value:
        raise wasmtime.Trap._from_ptr(ctypes.cast(trap.value, ctypes.POINTER(ffi.wasm_trap_t)))
    if error.value:
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error.value, ctypes.POINTER(ffi.wasmtime_error_t)))
