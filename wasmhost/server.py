"""Running a guest as a process's main job: start it, stop it on SIGINT/SIGTERM, report why it ended."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import attrs

from . import stats
from .errors import ConfigError, Interrupted
from .host import Host
from .instance import Instance
from .module import Module
from .net import loop
from .net.connections import access_log

if TYPE_CHECKING:  # the front end (h11) is imported only when a component is served
    from .http import Answered, HttpLimits

log = logging.getLogger("wasmhost")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def demo_module() -> Path:
    """The bundled ``http-hello`` guest (so ``pip install`` users need no Rust)."""
    return Path(__file__).with_name("_demo") / "http-hello.wasm"


class Readiness(Protocol):
    """What a process serves, as its companions (the admin endpoint, a worker's lifecycle) see it."""

    @property
    def ready(self) -> bool:
        """Listening and not draining: what ``/readyz`` reports."""
        ...

    @property
    def draining(self) -> bool: ...


@attrs.define
class Serving:
    """The guest a process serves (a ``Readiness``); ``drain`` starts a graceful shutdown."""

    instance: Instance
    graceful_timeout: float | None = None
    draining: bool = False
    _tasks: list[asyncio.Task[None]] = attrs.field(factory=list)

    @property
    def ready(self) -> bool:
        """Listening and not draining: what ``/readyz`` reports."""
        return bool(self.instance.listening) and not self.draining

    def drain(self) -> None:
        """Shut down gracefully (``Instance.drain``); a second call, or no graceful
        timeout, stops the guest at once."""
        if self.draining or self.graceful_timeout is None:
            self.instance.stop()
            return
        self.draining = True
        self._tasks.append(asyncio.ensure_future(self.instance.drain(self.graceful_timeout)))


#: Runs beside the guest (or the wasi:http front end) on its loop until it ends (then it is cancelled).
Companion = Callable[[Readiness], Awaitable[None]]


def run(
    instance: Instance,
    graceful_timeout: float | None = None,
    signals: tuple[int, ...] = SIGNALS,
    companions: Sequence[Companion] = (),
) -> tuple[int, int | None]:
    """Run the guest on an event loop until it ends, a signal stops it or a companion drains it.

    With ``graceful_timeout`` the first SIGINT/SIGTERM drains (``Instance.drain``) and a
    second stops at once; without, the first stops at once. Returns ``(exit code, signal)``;
    the signal is None when the guest ended by itself or was drained by a companion.
    """
    received: list[int] = []
    serving = Serving(instance, graceful_timeout)

    def on_signal(sig: int) -> None:
        received.append(sig)
        serving.drain()

    async def main() -> int:
        running = asyncio.get_running_loop()
        for sig in signals:
            running.add_signal_handler(sig, on_signal, sig)
        beside = [asyncio.ensure_future(companion(serving)) for companion in companions]
        try:
            return await instance.run_async()
        finally:
            for sig in signals:
                running.remove_signal_handler(sig)
            for task in [*serving._tasks, *beside]:
                task.cancel()
            await asyncio.gather(*beside, return_exceptions=True)

    try:
        return loop.run(main()), None
    except Interrupted:
        if received or serving.draining:
            return 0, received[0] if received else None
        raise


@attrs.frozen
class HttpOptions:
    """How ``serve`` runs a wasi:http component: where it listens (the host part comes from
    ``Network.bind_address``, default all interfaces, as ``wasmtime serve``), how many requests
    an instance may serve (1: a fresh one per request), and the front end's limits."""

    port: int = 8080
    reuse: int = 1
    limits: HttpLimits | None = None  # None: the front end's defaults


@attrs.define
class _Front:
    """The wasi:http front end as the companions see it (a ``Readiness``)."""

    listening: bool = False
    draining: bool = False

    @property
    def ready(self) -> bool:
        return self.listening and not self.draining


class _Counted:
    """The front end's ``Observer``: connections and requests for ``--metrics``, one
    common-log line per request for ``--access-log``."""

    def opened(self) -> None:
        stats.connection_opened()

    def closed(self) -> None:
        stats.connection_closed()

    def answered(self, answer: Answered) -> None:
        stats.request(answer.status, answer.seconds)
        if answer.limit is not None:
            stats.limit_hit(answer.limit)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s", answer.common_log())


def serve_http(
    module: Module,
    host: Host,
    options: HttpOptions,
    graceful_timeout: float | None = None,
    signals: tuple[int, ...] = SIGNALS,
    companions: Sequence[Companion] = (),
) -> int:
    """Serve a wasi:http component on the h11 front end until a signal ends it.

    The first SIGINT/SIGTERM drains (stop listening, close each connection once no request is
    in flight, up to ``graceful_timeout``); a second, or no graceful timeout, ends at once.
    """
    from .http import Server
    from .wasip2.handler import ComponentHandler

    async def main() -> int:
        handler = ComponentHandler.for_host(module, host, reuse=options.reuse)
        front = Server(handler, options.limits, _Counted())
        state = _Front()
        beside = [asyncio.ensure_future(companion(state)) for companion in companions]
        done = asyncio.Event()
        received: list[int] = []
        draining: list[asyncio.Task[None]] = []

        async def drain(timeout: float) -> None:
            state.draining = True
            front.stop_accepting()
            deadline = time.monotonic() + timeout
            while front.close_idle() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            done.set()

        def on_signal(sig: int) -> None:
            received.append(sig)
            if graceful_timeout is None or len(received) > 1:
                done.set()
            else:
                draining.append(asyncio.ensure_future(drain(graceful_timeout)))

        running = asyncio.get_running_loop()
        for sig in signals:
            running.add_signal_handler(sig, on_signal, sig)
        try:
            listener = _listen(host, options.port)
            await handler.warm()
            await front.start(sock=listener)
            state.listening = True
            log.info("%s: serving wasi:http on http://%s", module.name, _show(*front.address))
            await done.wait()
        finally:
            for sig in signals:
                running.remove_signal_handler(sig)
            for task in [*draining, *beside]:
                task.cancel()
            await asyncio.gather(*beside, return_exceptions=True)
            front.close()
            await front.wait_closed()
            await handler.close()
        return 0

    return loop.run(main())


def _listen(host: Host, port: int) -> socket.socket:
    """The front end's listening socket, on ``--host`` (default all interfaces)."""
    address = host.network.bind_address or "0.0.0.0"
    try:
        return listening_socket(address, port, host.network.reuse_port, backlog=1024)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {_show(address, port)}: {exc.strerror}") from None


def listening_socket(address: str, port: int, reuse_port: bool, backlog: int) -> socket.socket:
    """A TCP socket listening on ``address:port`` (port 0: the OS picks); ``reuse_port`` shares
    the port with other workers. Raises ``OSError``."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _show(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def print_host_calls(instance: Instance) -> None:
    """``--host-call-stats``: calls per host function, their total and the suspensions."""
    counts = instance.host_calls()
    lines = [f"host-calls {name} {n}" for name, n in sorted(counts.items(), key=lambda item: -item[1])]
    lines += [f"host-calls total {sum(counts.values())}", f"host-suspensions {instance.suspensions}"]
    sys.stderr.write("".join(f"{line}\n" for line in lines))  # one write: workers share stderr
    sys.stderr.flush()
