"""What this process's guests did so far, for ``--metrics``: plain counters, no dependencies.

Live instances are read when asked (``snapshot``); an instance that closes folds its counts
into the totals first, so every counter only grows. Events that outlive no instance (traps,
limit hits) are counted as they happen.
"""

from __future__ import annotations

import collections
import weakref
from typing import Protocol

import attrs

from .net.connections import Connections


class Observed(Protocol):
    """What the counters read from a live instance (``Instance`` is one)."""

    @property
    def connections(self) -> Connections: ...

    @property
    def suspensions(self) -> int: ...

    @property
    def memory_bytes(self) -> int: ...

    def host_calls(self) -> dict[str, int]: ...


@attrs.define
class Snapshot:
    """The counters at one moment."""

    instances_live: int = 0
    connections_accepted: int = 0
    connections_open: int = 0
    memory_bytes: int = 0
    suspensions: int = 0
    host_calls: collections.Counter[str] = attrs.field(factory=collections.Counter)
    traps: collections.Counter[str] = attrs.field(factory=collections.Counter)
    limit_hits: collections.Counter[str] = attrs.field(factory=collections.Counter)


_live: weakref.WeakSet[Observed] = weakref.WeakSet()
_retired = Snapshot()


def track(instance: Observed) -> None:
    """Count ``instance`` from now on, until ``retire``."""
    _live.add(instance)


def retire(instance: Observed) -> None:
    """Fold a closing instance's counts into the totals (call before its store is freed)."""
    if instance in _live:
        _live.discard(instance)
        _add(_retired, instance, live=False)


def trap(kind: str) -> None:
    """A guest call ended abnormally: a trap kind, ``timeout`` or ``host failure``."""
    _retired.traps[kind] += 1


def limit_hit(limit: str) -> None:
    """An operator's limit took effect (``timeout``, ``max_requests``)."""
    _retired.limit_hits[limit] += 1


def snapshot() -> Snapshot:
    now = Snapshot(
        connections_accepted=_retired.connections_accepted,
        suspensions=_retired.suspensions,
        host_calls=collections.Counter(_retired.host_calls),
        traps=collections.Counter(_retired.traps),
        limit_hits=collections.Counter(_retired.limit_hits),
    )
    for instance in list(_live):
        _add(now, instance, live=True)
    return now


def _add(into: Snapshot, instance: Observed, live: bool) -> None:
    conns = instance.connections
    into.connections_accepted += conns.accepted
    into.limit_hits["concurrency"] += conns.limit_hits
    into.suspensions += instance.suspensions
    into.host_calls.update(instance.host_calls())
    if live:
        into.instances_live += 1
        into.connections_open += conns.open
        into.memory_bytes += instance.memory_bytes
