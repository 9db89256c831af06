"""What one HTTP connection may cost the server: sizes and timeouts (frozen, validated)."""

from __future__ import annotations

from typing import Any

import attrs


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"http limit {attribute.name} must be positive, not {value!r}")


@attrs.frozen
class HttpLimits:
    """Each limit ends the request with one error response and one log line.

    ``max_header_bytes``: request line plus headers, else 431. ``max_body_bytes``: a request
    body, declared or received, else 413. ``header_timeout``: from a request's first byte to its
    last header, else 408 (a slowloris client). ``idle_timeout``: a kept-alive connection with no
    request, then closed; also a request body that stalls, or a client that stops reading the
    response (the handler's read or write fails with ``BodyError``). ``request_timeout``: from
    the headers to the handler's response start, else 504. ``buffer_bytes``: request body read
    ahead of the handler, and response bytes queued for a slow client, before reading (or the
    handler) waits.
    """

    max_header_bytes: int = attrs.field(default=16 * 1024, validator=_positive)
    max_body_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    header_timeout: float = attrs.field(default=10.0, validator=_positive)
    idle_timeout: float = attrs.field(default=60.0, validator=_positive)
    request_timeout: float = attrs.field(default=30.0, validator=_positive)
    buffer_bytes: int = attrs.field(default=64 * 1024, validator=_positive)
