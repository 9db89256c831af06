"""A running guest: ``run`` / ``run_async`` / ``call`` / ``stop`` / ``close``, and everything it holds."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from . import _native, stats
from .errors import ConfigError, GuestTrap, HostFailure, Interrupted, LinkError, ModuleError, Timeout, WasmhostError
from .host import Host, Stdio
from .module import Module
from .net.connections import Connections
from .wasi import linking
from .wasi.abi import STDIO_RIGHTS
from .wasi.context import Interrupted as WaitInterrupted
from .wasi.context import ProcExit, WasiContext
from .wasi.fdtable import (
    BytesInput,
    CallbackOutput,
    Descriptor,
    Directory,
    FdTable,
    NullStream,
    OsFile,
    StderrTail,
)
from .wasi.memory import GuestMemory
from .wasi.preview1 import FUNCTIONS, Preview1
from .wasi.sockets import SOCKET_FUNCTIONS, Sockets

log = logging.getLogger("wasmhost")
_T = TypeVar("_T")

_TIMEOUT = "timeout"
_STOPPED = "stopped"


class State(enum.Enum):
    """Where an instance is in its life: calls run only from IDLE, one at a time."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"  # stop() was asked; the guest unwinds at its next host call or tick
    CLOSED = "closed"


class Instance:
    """One instantiation of a module under a host configuration.

    Every call runs the guest on a fiber driven by an event loop: ``run_async()`` /
    ``call_async()`` on the caller's loop, ``run()`` / ``call()`` on a private one. Use as a
    context manager (or call ``close()``) to release descriptors and the store.
    """

    def __init__(self, module: Module, host: Host | None = None) -> None:
        if module.is_component:
            raise ModuleError(
                f"{module.name}: is a WebAssembly component ({module.kind.value}), not a core module;"
                " serve a wasi:http component with `wasmhost serve`"
            )
        self.module = module
        self.host = host or Host()
        self._state = State.IDLE
        self._reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._private: asyncio.AbstractEventLoop | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._close_when_idle = False
        self._closing = threading.Lock()
        self._initialized = False
        limits = self.host.limits
        fds = _fd_table(self.host)
        args = [os.path.basename(module.name).encode()] + [a.encode() for a in self.host.args]
        env = [f"{k}={v}".encode() for k, v in self.host.env]
        self._stderr_tail = fds.get(2)
        fds.on_full = lambda limit: log.info(
            "%s: descriptor limit %d reached: opens and accepts get EMFILE", module.name, limit
        )
        self._ctx = WasiContext(args, env, fds, lambda: self._reason)
        self._store: _native.Store | None = None
        try:
            self._store = _native.Store(limits.fuel, limits.memory, lambda: self._reason, linking.errno_of)
            self._sockets = Sockets(self._ctx, self.host.network, os.path.basename(module.name))
            preview1 = Preview1(self._ctx, self.host.network.idle_backoff)
            table = preview1.fronted(linking.table_of(preview1, FUNCTIONS))
            table.update(self._sockets.fronted(linking.table_of(self._sockets, SOCKET_FUNCTIONS)))
            funcs, missing = linking.link(module.imports, table)
            if missing and self.host.trap_unknown_imports:
                funcs.update(linking.trapping(missing))
                log.warning("%s: unknown imports will trap if called: %s", module.name, _names(missing))
            elif missing:
                raise LinkError(module.name, [f"{m.module}::{m.name}" for m in missing])
            try:
                self._instance = self._store.instantiate(module.compiled(limits.fuel is not None), funcs)
            except _native.GuestError as exc:
                raise self._ended(self._failure(exc)) from None
        except BaseException:
            self._ctx.close()
            if self._store is not None:
                self._store.close()
            raise
        locate = self._store.memory_locator(self._instance)
        self._memory_size: Callable[[], int] = (lambda: locate()[1]) if locate is not None else (lambda: 0)
        if locate is not None:
            self._ctx.memory = GuestMemory(locate)
        stats.track(self)

    @property
    def state(self) -> State:
        return self._state

    # --- running ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run ``_start`` to completion on a private event loop; returns the guest's exit code.

        Raises ``GuestTrap`` when the guest traps, ``Timeout`` past the time limit and
        ``Interrupted`` after ``stop()``. Inside a running loop, use ``run_async()``.
        """
        return self._sync(self.run_async())

    async def run_async(self) -> int:
        """Run ``_start`` on the running loop. Cancelling the awaiting task drops the guest."""
        start = self._export("_start")
        if start is None:
            raise ModuleError(f"{self.module.name}: no _start export (a reactor: use call())")
        try:
            return await self._call(start) or 0
        finally:
            # As at process exit: a command that ended holds no descriptors or sockets.
            self._ctx.fds.close_all()

    def call(self, name: str, *args: int | float) -> Any:
        """Call an exported function (a reactor's ``_initialize`` runs first, once)."""
        return self._sync(self.call_async(name, *args))

    async def call_async(self, name: str, *args: int | float) -> Any:
        """``call()`` on the running loop."""
        func = self._export(name)
        if func is None:
            raise WasmhostError(f"{self.module.name}: no exported function {name!r}")
        if not self._initialized:
            self._initialized = True
            init = self._export("_initialize")
            if init is not None and name != "_initialize":
                await self._call(init)
        return await self._call(func, *args)

    def stop(self) -> None:
        """End the running call promptly (or the next one), from any thread; it then raises
        ``Interrupted``. Idempotent."""
        self._interrupt(_STOPPED)

    async def drain(self, timeout: float) -> None:
        """Stop accepting connections, let the open ones finish for up to ``timeout`` seconds
        (each is closed once no request is in flight on it), then stop the guest: a
        server's graceful shutdown. Call it on the loop driving the guest."""
        self._sockets.stop_accepting()
        deadline = time.monotonic() + timeout
        open_now = self._sockets.close_idle()
        if open_now:
            log.info("%s: draining %d connection(s), up to %g s", self.module.name, open_now, timeout)
        while open_now and self._state is State.RUNNING and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            open_now = self._sockets.close_idle()
        if open_now:
            log.warning("%s: graceful timeout: closing %d connection(s) still busy", self.module.name, open_now)
        self.stop()

    def _interrupt(self, reason: str) -> None:
        if self._state is State.CLOSED:
            return
        if self._reason is None:
            self._reason = reason
        if self._state is State.RUNNING:
            self._state = State.STOPPING
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._ctx.wake()
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop: the call it drove is over
                loop.call_soon_threadsafe(self._ctx.wake)

    def _export(self, name: str) -> Any:
        if self._state is State.CLOSED:
            raise WasmhostError(f"{self.module.name}: the instance is closed")
        assert self._store is not None
        return self._store.exported_func(self._instance, name)

    def _sync(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Drive ``coro`` on this instance's private loop (a KeyboardInterrupt unwinds the guest)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise WasmhostError(f"{self.module.name}: inside a running event loop, use run_async() or call_async()")
        if self._private is None:
            # asyncio's own loop, not uvloop: closing a uvloop loop on Linux tears down libuv's
            # io_uring ring, after which the kernel may cut the process's next blocking pipe
            # write short (about 1 run in 100 here), and an unbuffered text stream
            # (PYTHONUNBUFFERED) drops the rest silently. A private loop must not do that to
            # the program embedding us.
            self._private = asyncio.new_event_loop()
        private = self._private
        task = private.create_task(coro)
        try:
            return private.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                private.run_until_complete(asyncio.wait([task]))
            raise
        finally:
            with self._closing:  # close() may be closing it from another thread right now
                if self._state is State.CLOSED and not private.is_closed():
                    private.close()

    async def _call(self, func: Any, *args: int | float) -> Any:
        if self._state is not State.IDLE:
            raise WasmhostError(f"{self.module.name}: the instance is {self._state.value}; one call at a time")
        assert self._store is not None
        loop = asyncio.get_running_loop()
        self._state = State.RUNNING if self._reason is None else State.STOPPING
        self._idle.clear()
        self._loop, self._loop_thread, self._ctx.loop = loop, threading.get_ident(), loop
        timeout = self.host.limits.timeout
        timer = None if timeout is None else loop.call_later(timeout, self._interrupt, _TIMEOUT)
        try:
            return await self._store.call(func, *args)
        except _native.GuestError as exc:
            failure = self._failure(exc)
            if isinstance(failure, ProcExit):
                return failure.code
            raise self._ended(failure) from None
        finally:
            if timer is not None:
                timer.cancel()
            self._ctx.release()
            self._loop = self._ctx.loop = None
            self._reason = None
            self._state = State.IDLE
            self._idle.set()
            if self._close_when_idle:
                self.close()

    def _failure(self, exc: Exception) -> BaseException:
        """Why a guest call failed: an exit, an interruption, a host bug or a trap."""
        assert self._store is not None
        pending = self._store.take_pending()
        if isinstance(pending, (ProcExit, KeyboardInterrupt, SystemExit)):
            return pending
        if self._reason == _TIMEOUT:
            return Timeout(f"{self.module.name}: stopped after its {self.host.limits.timeout:g} s time limit")
        if self._reason is not None or isinstance(pending, WaitInterrupted):
            return Interrupted(f"{self.module.name}: stopped")
        info = _native.describe(exc)
        if isinstance(pending, linking.UnknownImportCalled):
            return GuestTrap(self.module.name, str(pending), "unknown import called", info.frames, self._stderr)
        if pending is not None:
            failure = HostFailure(f"{self.module.name}: host function failed: {type(pending).__name__}: {pending}")
            failure.__cause__ = pending
            return failure
        return GuestTrap(self.module.name, info.message, info.kind, info.frames, self._stderr)

    def _ended(self, failure: BaseException) -> BaseException:
        """Log one line naming the guest and how its call ended, count it, and return it."""
        if isinstance(failure, Timeout):
            stats.trap("timeout")
            stats.limit_hit("timeout")
        elif isinstance(failure, GuestTrap):
            stats.trap(failure.kind or "trap")
        elif isinstance(failure, HostFailure):
            stats.trap("host failure")
        if isinstance(failure, (GuestTrap, HostFailure, Timeout)):
            log.error("%s", failure)
        elif isinstance(failure, Interrupted):
            log.info("%s", failure)
        return failure

    def host_calls(self) -> dict[str, int]:
        """Calls the guest made to each host function so far (for profiling guests)."""
        return self._store.counts() if self._store is not None else {}

    @property
    def suspensions(self) -> int:
        """How many times a host call suspended the guest to wait on the loop so far."""
        return self._store.suspensions if self._store is not None else 0

    @property
    def _stderr(self) -> str:
        tail = self._stderr_tail
        return tail.tail.decode("utf-8", "replace") if isinstance(tail, StderrTail) else ""

    @property
    def connections(self) -> Connections:
        """The guest's accepted connections: open now, accepted so far, limit hits."""
        return self._sockets.connections

    @property
    def memory_bytes(self) -> int:
        """The size of the guest's linear memory now (0 once closed)."""
        return self._memory_size() if self._state is not State.CLOSED else 0

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The host addresses the guest's sockets listen on (after any port mapping)."""
        return list(self._sockets.listening)

    # --- resources -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop a running call, then close every descriptor the guest holds and free the store.

        From the thread of the loop driving the call, the release happens as soon as the
        guest has unwound; from any other thread, this waits for it. Idempotent.
        """
        with self._closing:
            if self._state is State.CLOSED:
                return
            if self._state is not State.IDLE:
                self.stop()
                if threading.get_ident() == self._loop_thread:
                    self._close_when_idle = True
                    return
                self._idle.wait()
            stats.retire(self)
            self._state = State.CLOSED
            self._ctx.close()
            if self._store is not None:
                self._store.close()
            if self._private is not None and not self._private.is_running() and not self._private.is_closed():
                self._private.close()  # else the thread running it closes it (see _sync)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _names(imports: list[_native.Import]) -> str:
    return ", ".join(f"{i.module}::{i.name}" for i in imports)


def _fd_table(host: Host) -> FdTable:
    fds = FdTable(host.limits.max_fds)
    opened: list[Descriptor] = []
    try:
        for index, spec in enumerate((host.stdin, host.stdout, host.stderr)):
            opened.append(_stdio(spec, index) if index != 2 else StderrTail(_stdio(spec, index)))
            fds.add(opened[-1])
        for pre in host.preopens:
            pre.check()
            opened.append(Directory.open_preopen(str(pre.host), pre.guest, pre.read_only))
            fds.add(opened[-1])
    except BaseException:
        for desc in opened:
            desc.close()
        raise
    return fds


def _stdio(spec: Stdio, index: int) -> Descriptor:
    if spec == "inherit":
        try:
            return OsFile(index, STDIO_RIGHTS, owned=False)
        except OSError:
            return NullStream()
    if spec is None:
        return NullStream()
    if isinstance(spec, bytes):
        if index != 0:
            raise ConfigError("bytes can only be given as stdin")
        return BytesInput(spec)
    if isinstance(spec, Path):
        flags = os.O_RDONLY if index == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            return OsFile(os.open(spec, flags | os.O_CLOEXEC, 0o644), STDIO_RIGHTS)
        except OSError as exc:
            raise ConfigError(
                f"{spec}: cannot open for {'stdin' if index == 0 else 'output'}: {exc.strerror}"
            ) from None
    if callable(spec):
        return CallbackOutput(spec)
    raise ConfigError(f"unsupported stdio setting {spec!r}")
