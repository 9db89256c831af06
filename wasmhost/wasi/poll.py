"""``poll_oneoff`` without I/O: decode subscriptions, decide what fired, encode events.

The caller supplies readiness (``revents`` per host fd, from ``poll(2)`` or a loop) and the
current time; this module turns that into the events the guest sees, in subscription order.
"""

from __future__ import annotations

import select
from typing import NamedTuple

from .abi import (
    EVENT,
    EVENT_FD_READWRITE_HANGUP,
    SUB_CLOCK,
    SUB_FD,
    SUBSCRIPTION,
    SUBSCRIPTION_CLOCK_ABSTIME,
    Clock,
    Errno,
    EventType,
)

#: The event types as plain ints: comparing with an IntEnum member goes through the enum.
CLOCK, FD_READ, FD_WRITE = int(EventType.CLOCK), int(EventType.FD_READ), int(EventType.FD_WRITE)
_READABLE = select.POLLIN | select.POLLPRI
_WRITABLE = select.POLLOUT
_HANGUP = select.POLLHUP
_ERROR = select.POLLERR | select.POLLNVAL


class Subscription(NamedTuple):
    """One decoded subscription (a NamedTuple: poll_oneoff makes several per call)."""

    userdata: int
    type: int
    fd: int = 0
    deadline_ns: int | None = None  # clocks: host monotonic nanoseconds
    error: Errno = Errno.SUCCESS


def decode(data: bytes, now_ns: int, realtime_ns: int) -> list[Subscription]:
    """Subscriptions from guest bytes; clock times become host-monotonic deadlines."""
    subs = []
    for userdata, tag, body in SUBSCRIPTION.iter_unpack(data):
        if tag == CLOCK:
            clock_id, timeout, _precision, flags = SUB_CLOCK.unpack_from(body)
            subs.append(_clock(userdata, clock_id, timeout, flags, now_ns, realtime_ns))
        elif tag in (FD_READ, FD_WRITE):
            subs.append(Subscription(userdata, tag, SUB_FD.unpack_from(body)[0]))
        else:
            subs.append(Subscription(userdata, EventType.CLOCK, error=Errno.INVAL))
    return subs


def _clock(userdata: int, clock_id: int, timeout: int, flags: int, now_ns: int, realtime_ns: int) -> Subscription:
    if flags & ~SUBSCRIPTION_CLOCK_ABSTIME or clock_id not in Clock.__members__.values():
        return Subscription(userdata, EventType.CLOCK, error=Errno.INVAL)
    if not flags & SUBSCRIPTION_CLOCK_ABSTIME:
        deadline = now_ns + timeout
    elif clock_id == Clock.REALTIME:
        deadline = now_ns + (timeout - realtime_ns)
    else:
        deadline = timeout
    return Subscription(userdata, EventType.CLOCK, deadline_ns=deadline)


def event(sub: Subscription, error: int = 0, nbytes: int = 0) -> bytes:
    """The encoded event (32 bytes, as the guest reads it) answering ``sub``."""
    return EVENT.pack(sub.userdata, error, sub.type, nbytes, 0)


def fd_event(sub: Subscription, revents: int) -> bytes | None:
    """The encoded event for an fd subscription given its ``poll(2)`` revents, or None if not
    ready.

    A hang-up or error makes both directions ready (the guest's next I/O call reports the
    condition); only a full hang-up sets the HANGUP flag. Never an ``error`` field: tokio
    treats any event error as fatal.
    """
    wanted = _READABLE if sub.type == FD_READ else _WRITABLE
    if not revents & (wanted | _HANGUP | _ERROR):
        return None
    flags = EVENT_FD_READWRITE_HANGUP if revents & _HANGUP else 0
    return EVENT.pack(sub.userdata, 0, sub.type, 1 if revents & wanted else 0, flags)  # poll(2) gives no count


def expired(sub: Subscription, now_ns: int) -> bool:
    return sub.deadline_ns is not None and sub.deadline_ns <= now_ns


def next_deadline(subs: list[Subscription]) -> int | None:
    deadlines = [s.deadline_ns for s in subs if s.deadline_ns is not None]
    return min(deadlines) if deadlines else None
