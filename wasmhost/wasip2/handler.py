"""Serving a wasi:http/proxy component: ``ComponentHandler`` is the front end's ``Handler``.

Per request it takes a ready instance from a small pool (refilled in the background, off the
request path; instances take the pooled engine's resident slots while any is free, see
``_native.core.RESIDENT_INSTANCES``, and are allocated on demand beyond them), builds the
``incoming-request`` and ``response-outparam`` resources, calls
``wasi:http/incoming-handler#handle`` on a fiber, and streams the body the guest writes to the
client as it is written: the guest waits when the client is slow (``streams.Pipe``). Trailers
pass both ways: the request's reach the guest's ``future-trailers``, and those the guest
finishes its body with end a chunked response.

A trap before the response is a 500 (the front end answers it); a trap after it cuts the
response. The front end's request deadline cancels the handler, which abandons the call: the
instance is thrown away. An instance serves one request unless ``reuse`` allows more; after
any failure it is never reused. The pool and every call that fails count in ``stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import attrs

from .. import stats
from .._native import GuestError, describe
from .._native.component import ExportIndex, Instance, Linker
from .._native.core import RESIDENT_INSTANCES, pooling_refused
from .._native.fiber import Store, pooled_stores
from ..errors import GuestTrap
from ..host import Host
from ..http import Request, Response
from ..module import GuestKind, Module
from .context import Wasi, WasiConfig
from .http import Fields, IncomingBody, IncomingRequest, OutgoingResponse, ResponseOutparam, received
from .linking import build_linker

log = logging.getLogger("wasmhost.http")
_HANDLER = "wasi:http/incoming-handler@"
#: A component call reports a trap as an error whose text names it: Wasmtime's words, and
#: the kind the core path reports for the same trap (``TrapCode``).
_TRAP = re.compile(r"wasm trap: (.+)")
_TRAP_KINDS = {
    "wasm `unreachable` instruction executed": "unreachable",
    "call stack exhausted": "stack overflow",
    "out of bounds memory access": "memory out of bounds",
    "undefined element: out of bounds table access": "table out of bounds",
    "uninitialized element": "indirect call to null",
    "indirect call type mismatch": "bad signature",
    "integer overflow": "integer overflow",
    "integer divide by zero": "integer division by zero",
    "invalid conversion to integer": "bad conversion to integer",
}


class NoResponse(Exception):
    """The component's ``handle`` returned without setting a response."""


class BodyAborted(Exception):
    """The component stopped before finishing the response body."""


@attrs.define
class _Tier:
    """The component as loaded into one engine (pooled or on demand), with its own linker."""

    component: Any
    linker: Linker
    export: ExportIndex
    pooled: bool

    @classmethod
    def load(cls, module: Module, fuel: bool, pooled: bool) -> _Tier:
        component = module.compiled(fuel, pooled)
        handler = next(name for name in module.exports if name.startswith(_HANDLER))
        return cls(component, build_linker(module.imports, fuel, pooled), ExportIndex(component, [handler, "handle"]),
                   pooled)  # fmt: skip

    def close(self) -> None:
        self.export.close()
        self.linker.close()


def _resident_tier(module: Module, fuel: bool) -> _Tier | None:
    """The component in the pooled engine, or None (said once) where it cannot go there."""
    reason = pooling_refused()
    if reason is None:
        try:  # an invalid component still raises ModuleError, from its first compile
            return _Tier.load(module, fuel, pooled=True)
        except GuestError as exc:  # over the pool's counts per component
            reason = str(exc)
    log.info("%s: instances allocated on demand only: %s", module.name, reason)
    return None


@attrs.define
class _Slot:
    instance: Instance
    wasi: Wasi
    tier: _Tier
    served: int = 0


class ComponentHandler:
    """Serves a wasi:http component (a ``Module`` of kind ``HTTP_COMPONENT``) with wasmhost's WASI 0.2.

    ``pool`` instances are kept ready; ``reuse`` is how many requests one instance may serve
    (1: a fresh instance per request, as wasi:http intends), and ``idle`` how many reusable
    instances may wait between requests. ``fuel`` is a budget per request (a reused instance
    starts each request with it again); running out traps, which the front end answers 500.
    """

    def __init__(self, module: Module, config: WasiConfig | None = None, *, pool: int = 2,
                 reuse: int = 1, idle: int = 16, max_memory: int | None = None,
                 fuel: int | None = None) -> None:  # fmt: skip
        if pool < 0 or reuse < 1:
            raise ValueError("pool must be >= 0 and reuse >= 1")
        if module.kind is not GuestKind.HTTP_COMPONENT:
            raise ValueError(f"{module.name}: not a wasi:http component (it does not export {_HANDLER}0.2.x)")
        self.name = module.name
        self.module = module
        self._resident = _resident_tier(module, fuel is not None)
        self._on_demand: _Tier | None = None  # loaded when the resident slots are all taken
        self._residents = 0
        self.config = config if config is not None else WasiConfig()
        self.pool_size = pool
        self.reuse = reuse
        self.idle = idle
        self.max_memory = max_memory
        self.fuel = fuel
        self._ready: list[_Slot] = []
        self._filling: asyncio.Task[None] | None = None
        self._closed = False
        #: Instances alive now (ready in the pool or serving), to check nothing leaks.
        self.live = 0
        #: Instances created so far.
        self.instantiated = 0
        stats.track_pool(self)

    @classmethod
    def for_host(cls, module: Module, host: Host, *, reuse: int = 1, pool: int = 2) -> ComponentHandler:
        """A handler giving each instance what ``host`` gives a core module: capabilities, the
        memory limit, and ``fuel`` per request."""
        return cls(module, WasiConfig.of(host), pool=pool, reuse=reuse, max_memory=host.limits.memory,
                   fuel=host.limits.fuel)  # fmt: skip

    def host_calls(self) -> dict[str, int]:
        """Calls of each host function by this handler's instances (summed over its linkers)."""
        calls: dict[str, int] = {}
        for tier in self._tiers():
            for name, cell in tier.linker.counts.items():
                if cell[0]:
                    calls[name] = calls.get(name, 0) + cell[0]
        return calls

    def _tiers(self) -> list[_Tier]:
        return [tier for tier in (self._resident, self._on_demand) if tier is not None]

    @property
    def pooled(self) -> int:
        """Instances ready for a request."""
        return len(self._ready)

    @property
    def resident(self) -> int:
        """Instances alive in the pooled engine's resident slots (the rest are on demand)."""
        return self._residents

    # --- the instance pool --------------------------------------------------------------------

    async def _instantiate(self) -> _Slot:
        self.instantiated += 1
        if self._resident is not None and pooled_stores() < RESIDENT_INSTANCES:
            try:
                return await self._instantiate_in(self._resident)
            except GuestError as exc:
                if "maximum concurrent limit" not in str(exc):  # another engine user took the slot
                    raise
        return await self._instantiate_in(self._on_demand_tier())

    def _on_demand_tier(self) -> _Tier:
        if self._on_demand is None:
            self._on_demand = _Tier.load(self.module, self.fuel is not None, pooled=False)
        return self._on_demand

    async def _instantiate_in(self, tier: _Tier) -> _Slot:
        store = Store(self.fuel, self.max_memory, lambda: "the server is closing" if self._closed else None,
                      pooled=tier.pooled)  # fmt: skip
        wasi = Wasi(self.config)
        try:
            instance = await tier.linker.instantiate(store, tier.component, wasi)
        except BaseException:
            store.close()
            raise
        self.live += 1
        self._residents += tier.pooled
        return _Slot(instance, wasi, tier)

    async def _fill(self) -> None:
        try:
            while not self._closed and len(self._ready) < self.pool_size:
                self._ready.append(await self._instantiate())
        except Exception as exc:  # noqa: BLE001 - the next request instantiates inline and reports it
            log.warning("refilling the instance pool failed: %s", exc)
        finally:
            self._filling = None

    def _refill(self) -> None:
        if self._filling is None and not self._closed and len(self._ready) < self.pool_size:
            self._filling = asyncio.get_running_loop().create_task(self._fill())

    async def _take(self) -> _Slot:
        slot = self._ready.pop() if self._ready else await self._instantiate()
        self._refill()
        return slot

    def _release(self, slot: _Slot, reusable: bool) -> None:
        """An instance that may serve again is taken next (``pop`` takes the last). At most
        ``idle`` instances wait in the pool, the oldest dropped first, so a burst does not leave
        a crowd of instances behind."""
        slot.served += 1
        if not (reusable and not self._closed and slot.served < self.reuse):
            self._discard(slot)
            return
        self._ready.append(slot)
        if len(self._ready) > max(self.idle, self.pool_size):
            self._discard(self._ready.pop(0))

    def _discard(self, slot: _Slot) -> None:
        slot.wasi.close()
        slot.instance.close()
        self.live -= 1
        self._residents -= slot.tier.pooled
        if slot.served:
            stats.recycled()

    async def warm(self) -> None:
        """Fill the pool now (a server calls this before it starts listening), and instantiate
        once on demand, so that Wasmtime has made that engine's memory image of the component:
        the first request beyond the resident slots costs no more than any other, and opens no
        descriptor under load."""
        await self._fill()
        if self._on_demand is None and not self._closed:
            self._discard(await self._instantiate_in(self._on_demand_tier()))

    async def close(self) -> None:
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        while self._ready:
            self._discard(self._ready.pop())
        for tier in self._tiers():
            tier.close()

    # --- one request ----------------------------------------------------------------------------

    async def __call__(self, request: Request, response: Response) -> None:
        slot = await self._take()
        reusable = False
        outparam = ResponseOutparam()
        call: asyncio.Future[Any] | None = None
        try:
            if self.fuel is not None:
                slot.instance.store.store.set_fuel(self.fuel)
            table = slot.wasi.table
            req = table.push(_incoming(request))
            out = table.push(outparam)
            call = asyncio.ensure_future(slot.instance.call(slot.tier.export, req, out))
            call.add_done_callback(_count_failure)
            await asyncio.wait([call, outparam.future], return_when=asyncio.FIRST_COMPLETED)
            if not outparam.future.done():
                call.result()  # a trap raises here
                raise NoResponse("the component returned without a response")
            answer = outparam.future.result()
            call.add_done_callback(lambda _call: _end_body(answer))
            await response.start(answer.status, answer.headers.entries)
            await _send_body(answer, response)
            await call
            await response.end(answer.body.trailers)
            reusable = True
        except GuestError as exc:  # one line for the log: the innermost reason, not the backtrace
            info = describe(exc)
            raise GuestTrap(self.name, info.message, _failure_kind(exc), info.frames) from None
        finally:
            if call is not None and not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
            if not outparam.future.done():
                outparam.future.cancel()
            elif not outparam.future.cancelled():
                outparam.future.exception()  # seen: no "exception never retrieved" warning
            self._release(slot, reusable)


def _count_failure(call: asyncio.Future[Any]) -> None:
    """A call that failed counts by kind in ``wasmhost_traps_total`` (which retrieves its
    exception: a trap after the body was cut short is no "exception never retrieved")."""
    failure = None if call.cancelled() else call.exception()
    if failure is not None:
        stats.trap(_failure_kind(failure))


def _failure_kind(failure: BaseException) -> str:
    """The trap kind, as the core path names it; a host function that raised is a host failure."""
    if isinstance(failure, NotImplementedError):
        return "unknown import called"
    if not isinstance(failure, GuestError):
        return "host failure"
    info = describe(failure)
    if info.kind is not None:
        return info.kind
    found = _TRAP.search(info.message)
    return _TRAP_KINDS.get(found.group(1), found.group(1)) if found else "trap"


def _incoming(request: Request) -> IncomingRequest:
    """The request as the guest sees it: the authority from ``host``, and no connection headers."""
    authority = next((value.decode("latin-1") for name, value in request.headers if name.lower() == b"host"), None)
    headers = Fields(received(request.headers), mutable=False)
    body = IncomingBody(request.body.read, request.body.trailing)
    return IncomingRequest(request.method, request.target, "http", authority, headers, body)


def _end_body(answer: OutgoingResponse) -> None:
    """The call ended: a body never asked for is empty; one never finished is cut short."""
    body = answer.body
    if not body.requested:
        body.pipe.finish()
    elif not body.finished:
        body.pipe.break_()


async def _send_body(answer: OutgoingResponse, response: Response) -> None:
    pipe = answer.body.pipe
    try:
        while (chunk := await pipe.get()) is not None:
            await response.write(chunk)
    except BaseException:
        pipe.break_()
        raise
    if pipe.broken:
        raise BodyAborted("the component did not finish the response body")
