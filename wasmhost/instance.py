"""A running guest: ``run`` / ``run_async`` / ``call`` / ``stop``, and everything it holds."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

from . import _native
from .errors import ConfigError, GuestTrap, HostFailure, Interrupted, LinkError, ModuleError, Timeout, WasmhostError
from .host import Host, Stdio
from .module import Module
from .net.wait import LoopWaiter, ThreadWaiter
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

_TIMEOUT = "timeout"
_STOPPED = "stopped"


class Instance:
    """One instantiation of a module under a host configuration.

    Use as a context manager (or call ``close()``) to release descriptors and the store.
    """

    def __init__(self, module: Module, host: Host | None = None) -> None:
        self.module = module
        self.host = host or Host()
        self._reason: str | None = None
        self._timer: threading.Timer | None = None
        limits = self.host.limits
        fds = _fd_table(self.host)
        args = [os.path.basename(module.name).encode()] + [a.encode() for a in self.host.args]
        env = [f"{k}={v}".encode() for k, v in self.host.env]
        self._stderr_tail = fds.get(2)
        self._ctx = WasiContext(args, env, fds, lambda: self._reason)
        self._ctx.blocked = _native.blocked
        try:
            self._store = _native.Store(limits.fuel, limits.memory, lambda: self._reason)
            self._sockets = Sockets(self._ctx, self.host.network, os.path.basename(module.name))
            table = linking.table_of(Preview1(self._ctx, self.host.network.idle_backoff), FUNCTIONS)
            table.update(linking.table_of(self._sockets, SOCKET_FUNCTIONS))
            funcs, missing = linking.link(module.imports, table)
            if missing and self.host.trap_unknown_imports:
                funcs.update(linking.trapping(missing))
                log.warning("%s: unknown imports will trap if called: %s", module.name, _names(missing))
            elif missing:
                raise LinkError(module.name, [f"{m.module}::{m.name}" for m in missing])
            self._calls = _native.HostCalls()
            try:
                self._instance = self._store.instantiate(module.compiled(limits.fuel is not None), self._calls, funcs)
            except _native.GuestError as exc:
                raise self._failure(exc) from None
        except BaseException:
            self._ctx.close()
            raise
        locate = self._store.memory_locator(self._instance)
        if locate is not None:
            self._ctx.memory = GuestMemory(locate)
        self._initialized = False

    # --- running ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run ``_start`` to completion in this thread; returns the guest's exit code.

        Raises ``GuestTrap`` when the guest traps, ``Timeout`` past the time limit and
        ``Interrupted`` after ``stop()``.
        """
        start = self._store.exported_func(self._instance, "_start")
        if start is None:
            raise ModuleError(f"{self.module.name}: no _start export (a reactor: use call())")
        try:
            return self._invoke(start) or 0
        finally:
            # As at process exit: a command that ended holds no descriptors or sockets.
            self._ctx.fds.close_all()

    async def run_async(self) -> int:
        """``run()`` on a dedicated thread; blocking waits happen on the running loop.

        Cancelling the awaiting task stops the guest.
        """
        loop = asyncio.get_running_loop()
        self._ctx.waiter.close()
        self._ctx.waiter = LoopWaiter(loop)
        self._ctx.loop = loop
        done: asyncio.Future[int] = loop.create_future()

        def settle(result: int | None, error: BaseException | None) -> None:
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result or 0)

        def worker() -> None:
            try:
                result = self.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        thread = threading.Thread(target=worker, name=f"wasmhost:{os.path.basename(self.module.name)}", daemon=True)
        thread.start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            done.cancel()  # the guest's own outcome no longer matters to anyone
            self.stop()
            await asyncio.to_thread(thread.join)
            raise
        finally:
            # Later calls (call(), another run) must not wait on a loop that may be gone.
            self._ctx.waiter = ThreadWaiter()
            self._ctx.loop = None

    def call(self, name: str, *args: int | float) -> Any:
        """Call an exported function (a reactor's ``_initialize`` runs first, once)."""
        func = self._store.exported_func(self._instance, name)
        if func is None:
            raise WasmhostError(f"{self.module.name}: no exported function {name!r}")
        if not self._initialized:
            self._initialized = True
            init = self._store.exported_func(self._instance, "_initialize")
            if init is not None and name != "_initialize":
                self._invoke(init)
        return self._invoke(func, *args)

    def stop(self) -> None:
        """End a running guest promptly, from any thread; ``run`` then raises ``Interrupted``."""
        self._interrupt(_STOPPED)

    def _interrupt(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason
        self._ctx.waiter.wake()

    def _invoke(self, func: Any, *args: int | float) -> Any:
        timeout = self.host.limits.timeout
        if timeout is not None and self._timer is None:
            self._timer = threading.Timer(timeout, self._interrupt, (_TIMEOUT,))
            self._timer.daemon = True
            self._timer.start()
        try:
            return self._store.call(func, *args)
        except _native.GuestError as exc:
            failure = self._failure(exc)
            if isinstance(failure, ProcExit):
                return failure.code
            raise failure from None
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _failure(self, exc: Exception) -> BaseException:
        """Why a guest call failed: an exit, an interruption, a host bug or a trap."""
        pending = self._calls.take_pending()
        if isinstance(pending, ProcExit):
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

    def host_calls(self) -> dict[str, int]:
        """Calls the guest made to each host function so far (for profiling guests)."""
        return self._calls.counts()

    @property
    def _stderr(self) -> str:
        tail = self._stderr_tail
        return tail.tail.decode("utf-8", "replace") if isinstance(tail, StderrTail) else ""

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The host addresses the guest's sockets listen on (after any port mapping)."""
        return list(self._sockets.listening)

    # --- resources -----------------------------------------------------------------------

    def close(self) -> None:
        """Close every descriptor the guest holds and free the store."""
        self._ctx.close()
        self._store.close()

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _names(imports: list[_native.Import]) -> str:
    return ", ".join(f"{i.module}::{i.name}" for i in imports)


def _fd_table(host: Host) -> FdTable:
    fds = FdTable()
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
