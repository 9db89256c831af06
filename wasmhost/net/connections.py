"""The accepted connections of one guest: how many are open, the concurrency limit, and the
access log.

Sans-I/O bookkeeping: the socket layer reports each accept and close (with the bytes moved)
and asks ``full`` before accepting; the C accept path counts the connections it takes
alone. At the limit, listeners stop being reported ready, so new connections wait in the
kernel's backlog until one of the guest's connections closes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs

from .._native.sockio import NEVER, ConnCounts

log = logging.getLogger("wasmhost")
#: One line per closed connection (INFO), off unless enabled: ``serve --access-log``, or
#: ``logging.getLogger("wasmhost.access").setLevel(logging.INFO)`` when embedding.
access_log = logging.getLogger("wasmhost.access")
access_log.setLevel(logging.WARNING)


@attrs.define
class Connection:
    """One accepted connection the access log will report: who, and since when."""

    peer: str
    opened: float = attrs.field(factory=time.monotonic)


def _bare(conns: Connections, _attribute: attrs.Attribute[Any], limit: int | None) -> int | None:
    """Keeps ``counts.bare`` true exactly when C may accept and close connections itself."""
    conns.counts.bare = limit is None and not conns.logged
    return limit


@attrs.define
class Connections:
    """Counters and the limit for one guest's accepted connections.

    The counts live in a structure the C accept path (``_native.sockio``) updates as well. It
    accepts and closes connections only when nothing here needs to see each one: no limit and
    no access log, whose level is read when the instance is made; and it leaves to Python the
    accept ``when_accepted`` waits for.
    """

    name: str
    limit: int | None = attrs.field(default=None, on_setattr=_bare)
    limit_hits: int = 0  # accepts that found the guest at its limit (each wait counts once)
    logged: bool = attrs.field(factory=lambda: access_log.isEnabledFor(logging.INFO))
    counts: ConnCounts = attrs.field(factory=lambda: ConnCounts(notify_at=NEVER), init=False)
    _at_limit: bool = False
    _on_reached: Callable[[], None] | None = None

    def __attrs_post_init__(self) -> None:
        _bare(self, attrs.fields(Connections).limit, self.limit)

    def when_accepted(self, total: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the ``total``-th connection is accepted (``serve
        --max-requests`` recycles a worker then)."""
        self.counts.notify_at = total
        self._on_reached = callback

    @property
    def accepted(self) -> int:
        accepted: int = self.counts.accepted
        return accepted

    @property
    def open(self) -> int:
        open_now: int = self.counts.open
        return open_now

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

    def opened(self, peer: Callable[[], str]) -> Connection | None:
        """Count a connection accepted in Python; its record when the access log wants one
        (``peer`` formats the address only then)."""
        self.counts.accepted += 1
        self.counts.open += 1
        if self.counts.accepted == self.counts.notify_at and self._on_reached is not None:
            self._on_reached()
        return Connection(peer()) if self.logged else None

    def closed(self, conn: Connection | None, received: int, sent: int) -> None:
        self.counts.open -= 1
        if conn is not None:
            access_log.info(
                "%s: %s closed after %.3f s, %d bytes in, %d bytes out",
                self.name, conn.peer, time.monotonic() - conn.opened, received, sent,
            )  # fmt: skip
