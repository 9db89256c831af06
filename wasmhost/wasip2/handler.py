"""Serving a wasi:http/proxy component: ``ComponentHandler`` is the front end's ``Handler``.

Per request it takes a ready instance from a small pool (refilled in the background, off the
request path), builds the ``incoming-request`` and ``response-outparam`` resources, calls
``wasi:http/incoming-handler#handle`` on a fiber, and streams the body the guest writes to the
client as it is written: the guest waits when the client is slow (``streams.Pipe``).

A trap before the response is a 500 (the front end answers it); a trap after it cuts the
response. The front end's request deadline cancels the handler, which abandons the call: the
instance is thrown away. An instance serves one request unless ``reuse`` allows more; after
any failure it is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import attrs

from .._native.component import ExportIndex, Instance, Linker
from .._native.fiber import Store
from ..http import Request, Response
from ..module import GuestKind, Module
from .context import Wasi, WasiConfig
from .http import FORBIDDEN, Fields, IncomingBody, IncomingRequest, OutgoingResponse, ResponseOutparam
from .linking import build_linker

log = logging.getLogger("wasmhost.http")
_HANDLER = "wasi:http/incoming-handler@"


class NoResponse(Exception):
    """The component's ``handle`` returned without setting a response."""


class BodyAborted(Exception):
    """The component stopped before finishing the response body."""


@attrs.define
class _Slot:
    instance: Instance
    wasi: Wasi
    served: int = 0


class ComponentHandler:
    """Serves a wasi:http component (a ``Module`` of kind ``HTTP_COMPONENT``) with wasmhost's WASI 0.2.

    ``pool`` instances are kept ready; ``reuse`` is how many requests one instance may serve
    (1: a fresh instance per request, as wasi:http intends), and ``idle`` how many reusable
    instances may wait between requests.
    """

    def __init__(self, module: Module, config: WasiConfig | None = None, *, pool: int = 2,
                 reuse: int = 1, idle: int = 16, max_memory: int | None = None) -> None:  # fmt: skip
        if pool < 0 or reuse < 1:
            raise ValueError("pool must be >= 0 and reuse >= 1")
        if module.kind is not GuestKind.HTTP_COMPONENT:
            raise ValueError(f"{module.name}: not a wasi:http component (it does not export {_HANDLER}0.2.x)")
        self.component = module.compiled(fuel=False)
        self.config = config if config is not None else WasiConfig()
        self.linker: Linker = build_linker(module.imports)
        handler = next(name for name in module.exports if name.startswith(_HANDLER))
        self.export = ExportIndex(self.component, [handler, "handle"])
        self.pool_size = pool
        self.reuse = reuse
        self.idle = idle
        self.max_memory = max_memory
        self._ready: list[_Slot] = []
        self._filling: asyncio.Task[None] | None = None
        self._closed = False
        #: Instances alive now (ready in the pool or serving), to check nothing leaks.
        self.live = 0
        #: Instances created so far.
        self.instantiated = 0

    # --- the instance pool --------------------------------------------------------------------

    async def _instantiate(self) -> _Slot:
        store = Store(None, self.max_memory, lambda: "the server is closing" if self._closed else None)
        wasi = Wasi(self.config)
        try:
            instance = await self.linker.instantiate(store, self.component, wasi)
        except BaseException:
            store.close()
            raise
        self.live += 1
        self.instantiated += 1
        return _Slot(instance, wasi)

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

    async def warm(self) -> None:
        """Fill the pool now (a server calls this before it starts listening)."""
        await self._fill()

    async def close(self) -> None:
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        while self._ready:
            self._discard(self._ready.pop())
        self.export.close()
        self.linker.close()

    # --- one request ----------------------------------------------------------------------------

    async def __call__(self, request: Request, response: Response) -> None:
        slot = await self._take()
        reusable = False
        outparam = ResponseOutparam()
        call: asyncio.Future[Any] | None = None
        try:
            table = slot.wasi.table
            req = table.push(_incoming(request))
            out = table.push(outparam)
            call = asyncio.ensure_future(slot.instance.call(self.export, req, out))
            await asyncio.wait([call, outparam.future], return_when=asyncio.FIRST_COMPLETED)
            if not outparam.future.done():
                call.result()  # a trap raises here
                raise NoResponse("the component returned without a response")
            answer = outparam.future.result()
            call.add_done_callback(lambda _call: _end_body(answer))
            await response.start(answer.status, answer.headers.entries)
            await _send_body(answer, response)
            await call
            reusable = True
        finally:
            if call is not None and not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
            elif call is not None and not call.cancelled():
                call.exception()  # a trap after the body was cut short: logged above, not "never retrieved"
            if not outparam.future.done():
                outparam.future.cancel()
            elif not outparam.future.cancelled():
                outparam.future.exception()  # seen: no "exception never retrieved" warning
            self._release(slot, reusable)


def _incoming(request: Request) -> IncomingRequest:
    """The request as the guest sees it: the authority from ``host``, and no connection headers."""
    entries = [(name.decode("latin-1").lower(), value) for name, value in request.headers]
    authority = next((value.decode("latin-1") for name, value in entries if name == "host"), None)
    headers = Fields([(name, value) for name, value in entries if name not in FORBIDDEN], mutable=False)
    return IncomingRequest(request.method, request.target, "http", authority, headers, IncomingBody(request.body.read))


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
