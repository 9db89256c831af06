"""The accepted connections of one guest: how many are open, the concurrency limit, and the
access log.

Sans-I/O bookkeeping: the socket layer reports each accept and close (with the bytes moved)
and asks ``full`` before accepting. At the limit, listeners stop being reported ready, so
new connections wait in the kernel's backlog until one of the guest's connections closes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs

log = logging.getLogger("wasmhost")
#: One line per closed connection (INFO), off unless enabled: ``serve --access-log``, or
#: ``logging.getLogger("wasmhost.access").setLevel(logging.INFO)`` when embedding.
access_log = logging.getLogger("wasmhost.access")
access_log.setLevel(logging.WARNING)


@attrs.define
class Connection:
    """One accepted connection: who, since when, and the bytes it moved."""

    peer: str
    opened: float = attrs.field(factory=time.monotonic)
    received: int = 0
    sent: int = 0


@attrs.define
class Connections:
    """Counters and the limit for one guest's accepted connections."""

    name: str
    limit: int | None = None
    accepted: int = 0
    open: int = 0
    limit_hits: int = 0  # accepts that found the guest at its limit (each wait counts once)
    #: Called after each accept with the total so far (``serve --max-requests`` recycles on it).
    on_accept: Callable[[int], None] | None = None
    _at_limit: bool = False

    @property
    def full(self) -> bool:
        """At the limit: listeners are not reported ready and accept says AGAIN."""
        full = self.limit is not None and self.open >= self.limit
        if full and not self._at_limit:
            self._at_limit = True
            self.limit_hits += 1
            if self.limit_hits == 1:
                log.warning("%s: %d connections open, the --limit-concurrency limit: new ones wait in the backlog",
                            self.name, self.open)  # fmt: skip
        elif not full:
            self._at_limit = False
        return full

    def opened(self, peer: str) -> Connection:
        self.accepted += 1
        self.open += 1
        if self.on_accept is not None:
            self.on_accept(self.accepted)
        return Connection(peer)

    def closed(self, conn: Connection) -> None:
        self.open -= 1
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s: %s closed after %.3f s, %d bytes in, %d bytes out",
                self.name, conn.peer, time.monotonic() - conn.opened, conn.received, conn.sent,
            )  # fmt: skip
