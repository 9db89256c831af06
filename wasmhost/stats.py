"""What this process's guests did so far, for ``--metrics``: plain counters, no dependencies.

Live instances and wasi:http instance pools are read when asked (``snapshot``); an instance
that closes folds its counts into the totals first, so every counter only grows. Events that
outlive no instance (traps, limit hits, recycled instances, and the wasi:http front end's
connections and requests) are counted as they happen.
"""

from __future__ import annotations

import bisect
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


class Pool(Protocol):
    """What the counters read from a wasi:http instance pool (``ComponentHandler`` is one)."""

    @property
    def live(self) -> int: ...

    @property
    def pooled(self) -> int: ...

    def host_calls(self) -> dict[str, int]:
        """Calls of each WASI 0.2 host function (``interface#name``) by its instances so far."""
        ...


#: Upper bounds, in seconds, of the request latency histogram's buckets (Prometheus' defaults).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@attrs.define
class Snapshot:
    """The counters at one moment. ``latency`` counts requests per bucket of
    ``LATENCY_BUCKETS``, the last one past them all (not cumulative)."""

    instances_live: int = 0
    instances_pooled: int = 0
    instances_recycled: int = 0
    connections_accepted: int = 0
    connections_open: int = 0
    memory_bytes: int = 0
    suspensions: int = 0
    host_calls: collections.Counter[str] = attrs.field(factory=collections.Counter)
    traps: collections.Counter[str] = attrs.field(factory=collections.Counter)
    limit_hits: collections.Counter[str] = attrs.field(factory=collections.Counter)
    requests: collections.Counter[str] = attrs.field(factory=collections.Counter)  # by status code
    latency: list[int] = attrs.field(factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0


_live: weakref.WeakSet[Observed] = weakref.WeakSet()
_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
_retired = Snapshot()


def track(instance: Observed) -> None:
    """Count ``instance`` from now on, until ``retire``."""
    _live.add(instance)


def track_pool(pool: Pool) -> None:
    """Count ``pool``'s instances while it exists."""
    _pools.add(pool)


def retire(instance: Observed) -> None:
    """Fold a closing instance's counts into the totals (call before its store is freed)."""
    if instance in _live:
        _live.discard(instance)
        _add(_retired, instance, live=False)


def trap(kind: str) -> None:
    """A guest call ended abnormally: a trap kind, ``timeout`` or ``host failure``."""
    _retired.traps[kind] += 1


def limit_hit(limit: str) -> None:
    """An operator's limit took effect (``timeout``, ``max_requests``, an ``HttpLimits`` field)."""
    _retired.limit_hits[limit] += 1


def recycled() -> None:
    """A wasi:http instance that served was thrown away."""
    _retired.instances_recycled += 1


def connection_opened() -> None:
    """The wasi:http front end accepted a connection."""
    _retired.connections_accepted += 1
    _retired.connections_open += 1


def connection_closed() -> None:
    _retired.connections_open -= 1


def request(status: int, seconds: float) -> None:
    """The wasi:http front end answered a request with ``status``, ``seconds`` after its first byte."""
    _retired.requests[str(status)] += 1
    _retired.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
    _retired.latency_sum += seconds


def snapshot() -> Snapshot:
    now = Snapshot(
        instances_recycled=_retired.instances_recycled,
        connections_accepted=_retired.connections_accepted,
        connections_open=_retired.connections_open,
        suspensions=_retired.suspensions,
        host_calls=collections.Counter(_retired.host_calls),
        traps=collections.Counter(_retired.traps),
        limit_hits=collections.Counter(_retired.limit_hits),
        requests=collections.Counter(_retired.requests),
        latency=list(_retired.latency),
        latency_sum=_retired.latency_sum,
    )
    for instance in list(_live):
        _add(now, instance, live=True)
    for pool in list(_pools):
        now.instances_live += pool.live
        now.instances_pooled += pool.pooled
        now.host_calls.update(pool.host_calls())
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
