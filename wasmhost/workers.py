"""Several worker processes serving one guest on the same ports, as uvicorn and gunicorn do.

Each worker is a fresh process (spawned, not forked: wasmtime's engine and the loop do not
survive a fork) running the guest with ``SO_REUSEPORT`` on every socket it binds, so the
kernel spreads connections over the workers. The supervisor restarts a worker that dies,
with exponential backoff, and gives up when workers die right after starting again and
again. The first SIGINT/SIGTERM drains every worker; a second SIGINT kills them at once.

With ``max_requests`` a worker that has accepted that many connections asks to be
recycled: the supervisor starts its replacement and drains it once the replacement listens
(a planned exit, never counted as a crash).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
import sys
import time
from collections.abc import Awaitable
from typing import Any

import attrs

from . import logs, stats
from .errors import ConfigError, GuestTrap, HostFailure, Interrupted
from .host import Host
from .module import Module
from .net.policy import PortMapping
from .server import HttpOptions

log = logging.getLogger("wasmhost")

FIRST_BACKOFF = 0.1  # seconds before restarting a worker that died; doubles while they keep dying
MAX_BACKOFF = 5.0
STABLE_AFTER = 10.0  # a worker alive this long resets the backoff
FAST_EXIT = 1.0  # a worker dying within this many seconds of its start died "right after starting"
GIVE_UP_AFTER = 5  # ... this many times in a row: a crash loop
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
_PR_SET_PDEATHSIG = 1


@attrs.frozen
class _Settings:
    """How each worker serves (sent to it when it starts)."""

    graceful_timeout: float
    host_call_stats: bool
    max_requests: int | None
    metrics: str | None
    log_level: int
    log_format: str
    access_log: bool
    http: HttpOptions | None  # a wasi:http component: how to serve it


@attrs.define
class _Worker:
    index: int
    process: Any  # multiprocessing's SpawnProcess
    started: float
    recycle: Any  # multiprocessing Events: set by the worker at --max-requests ...
    ready: Any  # ... and once its guest listens
    draining: bool = False  # recycled: asked to drain


class Workers:
    """``count`` processes serving ``module`` under ``host``; ``run()`` supervises them until a
    signal or a crash loop ends the service, and returns the exit code."""

    def __init__(
        self,
        module: Module,
        host: Host,
        count: int,
        graceful_timeout: float = 10.0,
        host_call_stats: bool = False,
        *,
        max_requests: int | None = None,
        metrics: str | None = None,
        log_format: str = "text",
        access_log: bool = False,
        http: HttpOptions | None = None,
    ) -> None:
        if count < 1:
            raise ConfigError(f"workers: need at least one, got {count}")
        if max_requests is not None and max_requests < 1:
            raise ConfigError(f"workers: max_requests must be positive, got {max_requests}")
        try:
            pickle.dumps((module, host))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ConfigError(f"workers: the host settings cannot be sent to worker processes ({exc})") from None
        self.module = module
        self.count = count
        self.graceful_timeout = graceful_timeout
        self.host_call_stats = host_call_stats
        self.max_requests = max_requests
        self.metrics = metrics
        self.log_format = log_format
        self.access_log = access_log
        if http is not None and max_requests is not None:
            raise ConfigError("--max-requests: not for wasi:http components (use --reuse-instances)")
        self.http = http
        self._reserved: list[socket.socket] = []
        self.host = attrs.evolve(host, network=attrs.evolve(host.network, reuse_port=True))
        self._context = multiprocessing.get_context("spawn")
        self._signals: list[int] = []

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.host = self._reserve_ports(self.host)
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for reservation in self._reserved:
                reservation.close()

    def _on_signal(self, sig: int, _frame: object) -> None:
        self._signals.append(sig)

    def _reserve_ports(self, host: Host) -> Host:
        """Pick the ports of ``-p ADDR:0:GUEST`` mappings once, for every worker."""
        mappings = []
        for mapping in host.network.ports:
            if mapping.host == 0:
                port = self._reserve(mapping.address or host.network.bind_address or "0.0.0.0")
                mapping = PortMapping(port, mapping.guest, mapping.address)
            mappings.append(mapping)
        if self.http is not None and self.http.port == 0:
            self.http = attrs.evolve(self.http, port=self._reserve(host.network.bind_address or "0.0.0.0"))
        return attrs.evolve(host, network=attrs.evolve(host.network, ports=mappings))

    def _reserve(self, address: str) -> int:
        """A port for every worker: a bound, not listening ``SO_REUSEPORT`` socket holds it
        until the service ends."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        reservation = socket.socket(family, socket.SOCK_STREAM)
        reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reservation.bind((address, 0))
        self._reserved.append(reservation)
        port: int = reservation.getsockname()[1]
        return port

    def _start(self, index: int) -> _Worker:
        settings = _Settings(
            self.graceful_timeout, self.host_call_stats, self.max_requests, self.metrics,
            logging.getLogger().getEffectiveLevel(), self.log_format, self.access_log, self.http,
        )  # fmt: skip
        recycle, ready = self._context.Event(), self._context.Event()
        args = (index, self.module, self.host, settings, recycle, ready)
        process = self._context.Process(target=_serve, args=args, name=f"wasmhost-worker-{index}")
        process.start()
        log.info("worker %d started (pid %d)", index, process.pid)
        return _Worker(index, process, time.monotonic(), recycle, ready)

    def _recycle(self, workers: dict[int, _Worker], retiring: dict[int, _Worker], stopping: bool) -> None:
        """Replace each worker that asked to be recycled, and drain the one it replaces once
        the replacement listens (until then, even across the replacement's restarts, the old
        one keeps serving)."""
        for index, worker in list(workers.items()):
            if worker.recycle.is_set() and index not in retiring and not stopping:
                retiring[index] = worker
                workers[index] = self._start(index)
        for index, old in list(retiring.items()):
            new = workers.get(index)
            if not old.draining and new is not None and new.ready.is_set():
                old.draining = True
                old.process.terminate()
            if not old.process.is_alive():
                old.process.join()
                log.info("worker %d (pid %d) recycled", index, old.process.pid)
                del retiring[index]

    def _supervise(self) -> int:
        workers = {i: self._start(i) for i in range(1, self.count + 1)}
        retiring: dict[int, _Worker] = {}  # worker index -> the recycled worker its replacement replaces
        restarts: dict[int, float] = {}  # worker index -> when to start it again
        backoff, fast_exits = FIRST_BACKOFF, 0
        stopping_since: float | None = None
        while workers or retiring or (restarts and stopping_since is None):
            sentinels = [w.process.sentinel for w in [*workers.values(), *retiring.values()]]
            multiprocessing.connection.wait(sentinels, timeout=0.05)
            now = time.monotonic()
            if self._signals and stopping_since is None:
                stopping_since = now
                restarts.clear()
                log.info("draining %d worker(s), up to %g s", len(workers) + len(retiring), self.graceful_timeout)
                for worker in [*workers.values(), *retiring.values()]:
                    worker.process.terminate()
            if stopping_since is not None and (
                len(self._signals) > 1 or now - stopping_since > self.graceful_timeout + 5
            ):
                for worker in [*workers.values(), *retiring.values()]:
                    worker.process.kill()
            self._recycle(workers, retiring, stopping_since is not None)
            for index, worker in list(workers.items()):
                if worker.process.is_alive():
                    if now - worker.started > STABLE_AFTER:
                        backoff, fast_exits = FIRST_BACKOFF, 0
                    continue
                worker.process.join()
                del workers[index]
                if stopping_since is not None:
                    continue
                lived = now - worker.started
                fast_exits = fast_exits + 1 if lived < FAST_EXIT else 0
                why = _exit_reason(worker.process.exitcode)
                if fast_exits >= GIVE_UP_AFTER:
                    log.error("workers keep dying right after starting (%d times in a row, last: %s); giving up",
                              fast_exits, why)  # fmt: skip
                    self._stop_all([*workers.values(), *retiring.values()])
                    return 1
                log.warning("worker %d (pid %d) %s; restarting in %g s", index, worker.process.pid, why, backoff)
                restarts[index] = now + backoff
                backoff = min(backoff * 2, MAX_BACKOFF)
            for index, when in list(restarts.items()):
                if now >= when and stopping_since is None:
                    del restarts[index]
                    workers[index] = self._start(index)
        if len(self._signals) > 1:
            return _SIGNAL_EXIT.get(signal.Signals(self._signals[-1]), 1)
        return 0

    def _stop_all(self, workers: list[_Worker]) -> None:
        for worker in workers:
            worker.process.kill()
            worker.process.join()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _die_with_parent() -> None:
    """A worker whose supervisor dies (even by SIGKILL) gets SIGTERM and drains: no orphans."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@attrs.define
class _Lifecycle:
    """A worker's ``server.Companion``: tells the supervisor when the guest listens, and asks
    to be recycled once ``max_requests`` connections were accepted."""

    index: int
    max_requests: int | None
    recycle: Any
    ready: Any

    def __call__(self, serving: Any) -> Awaitable[None]:
        if self.max_requests is not None:  # set now: before the guest's first accept
            serving.instance.connections.when_accepted(self.max_requests, self._reached)
        return self._announce_ready(serving)

    def _reached(self) -> None:
        log.info("worker %d: %d connections accepted (--max-requests): recycling it once its replacement"
                 " listens", self.index, self.max_requests)  # fmt: skip
        stats.limit_hit("max_requests")
        self.recycle.set()

    async def _announce_ready(self, serving: Any) -> None:
        while not serving.ready:
            await asyncio.sleep(0.02)
        self.ready.set()


def _serve(index: int, module: Module, host: Host, settings: _Settings, recycle: Any, ready: Any) -> None:
    """A worker's main: serve until drained; its log lines carry its number."""
    from . import server
    from .instance import Instance

    _die_with_parent()
    logs.configure(settings.log_level, settings.log_format, settings.access_log, worker=index)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    try:
        companions: list[server.Companion] = [_Lifecycle(index, settings.max_requests, recycle, ready)]
        if settings.metrics is not None:
            from . import admin

            companions.append(admin.Admin(admin.bind(admin.for_worker(settings.metrics, index), reuse_port=True)))
        if settings.http is not None:
            sys.exit(server.serve_http(module, host, settings.http, settings.graceful_timeout, (signal.SIGTERM,),
                                       companions))  # fmt: skip
        with Instance(module, host) as instance:
            try:
                code, _sig = server.run(instance, settings.graceful_timeout, (signal.SIGTERM,), companions)
            finally:
                if settings.host_call_stats:
                    server.print_host_calls(instance)
    except (GuestTrap, HostFailure, Interrupted):
        sys.exit(1)  # the instance logged why
    except Exception as exc:  # noqa: BLE001 - one line for the supervisor's log, as the CLI does
        log.error("%s", exc)
        sys.exit(1)
    sys.exit(code)
