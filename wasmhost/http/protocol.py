"""The server side of HTTP/1.1 without I/O: bytes in, request events out; responses out as bytes.

h11 parses and frames. This adds what a server open to anyone needs on top: the request-smuggling
checks h11 leaves to the server (Content-Length together with Transfer-Encoding), a limit on a
complete header block (h11 bounds only an incomplete one), the body size limit, and error
responses, which always close the connection.
"""

from __future__ import annotations

from http import HTTPStatus

import attrs
import h11

from .limits import HttpLimits


@attrs.frozen
class RequestHead:
    """A request line and headers (names lowercased, values as sent, in order)."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    http_version: str


@attrs.frozen
class BodyData:
    data: bytes


@attrs.frozen
class BodyEnd:
    """The request body is complete (also sent for a request without a body), with the trailer
    fields of a chunked one (names lowercased, in order)."""

    trailers: tuple[tuple[bytes, bytes], ...] = ()


@attrs.frozen
class Rejected:
    """The request is refused with ``status``; nothing more is read from this connection.
    ``head`` is the request's when it was refused for what its head says."""

    status: int
    reason: str
    head: RequestHead | None = None


@attrs.frozen
class PeerClosed:
    """The client closed its side between requests."""


Event = RequestHead | BodyData | BodyEnd | Rejected | PeerClosed


class ServerProtocol:
    """One connection's HTTP state: requests one at a time, pipelined ones wait in the buffer."""

    def __init__(self, limits: HttpLimits) -> None:
        self._limits = limits
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._body_bytes = 0
        self._head_only = False
        self._chunked = False  # the response body is sent in chunks (and may end with trailers)
        self._continue_withheld = False  # the client waits for 100 Continue, which was not sent
        self.failed = False

    # --- receiving ---------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes from the client (``b""`` at end of input); the events they complete."""
        if self.failed:
            return []
        self._conn.receive_data(data)
        return self._events()

    def next_request(self) -> list[Event]:
        """After a response and a complete request: start the next one, maybe already buffered."""
        self._conn.start_next_cycle()
        self._body_bytes = 0
        self._head_only = False
        self._continue_withheld = False
        return self._events()

    def _events(self) -> list[Event]:
        events: list[Event] = []
        while not self.failed:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                events.append(self._reject(exc.error_status_hint, str(exc)))
                break
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Request):
                events.append(self._head(event))
            elif isinstance(event, h11.Data):
                self._body_bytes += len(event.data)
                if self._body_bytes > self._limits.max_body_bytes:
                    events.append(self._reject(413, f"body over {self._limits.max_body_bytes} bytes"))
                else:
                    events.append(BodyData(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append(BodyEnd(tuple((bytes(name), bytes(value)) for name, value in event.headers)))
            elif isinstance(event, h11.ConnectionClosed):
                events.append(PeerClosed())
                break
        return events

    def _head(self, request: h11.Request) -> RequestHead | Rejected:
        headers = tuple((bytes(name), bytes(value)) for name, value in request.headers)
        head = RequestHead(
            request.method.decode("ascii"), request.target.decode("ascii"), headers, request.http_version.decode()
        )
        names = {name for name, _ in headers}
        self._head_only = request.method == b"HEAD"  # first: an error response to HEAD has no body either
        if request.method == b"CONNECT":  # h11 would take a 2xx answer as the start of a tunnel
            return self._reject(501, "CONNECT is not supported (no tunnels)", head)
        if b"content-length" in names and b"transfer-encoding" in names:
            return self._reject(400, "both Content-Length and Transfer-Encoding (request smuggling)", head)
        size = len(request.method) + len(request.target) + sum(len(n) + len(v) + 4 for n, v in headers)
        if size > self._limits.max_header_bytes:
            return self._reject(431, f"headers over {self._limits.max_header_bytes} bytes", head)
        length = dict(headers).get(b"content-length")
        if length is not None and int(length) > self._limits.max_body_bytes:
            return self._reject(413, f"Content-Length {int(length)} over {self._limits.max_body_bytes} bytes", head)
        self._continue_withheld = self._conn.they_are_waiting_for_100_continue
        return head

    def _reject(self, status: int, reason: str, head: RequestHead | None = None) -> Rejected:
        self.failed = True
        return Rejected(status, reason, head)

    # --- state -------------------------------------------------------------------------

    @property
    def waiting_for_head(self) -> bool:
        """No request in progress: bytes now are the start of the next one."""
        return self._conn.their_state is h11.IDLE

    @property
    def has_buffered_bytes(self) -> bool:
        return bool(self._conn.trailing_data[0])

    @property
    def expects_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and waits before sending the body."""
        return self._conn.they_are_waiting_for_100_continue

    @property
    def request_complete(self) -> bool:
        return self._conn.their_state is h11.DONE

    @property
    def reusable(self) -> bool:
        """The response is complete and both sides keep the connection open. A body nobody read
        may follow (it is to be discarded), unless the client was waiting for ``100 Continue`` and
        never got it: whether it sends the body anyway is its choice, so the connection must end."""
        if self._conn.our_state is not h11.DONE:
            return False
        return self._conn.their_state is h11.DONE or (
            self._conn.their_state is h11.SEND_BODY and not self._continue_withheld
        )

    # --- sending -----------------------------------------------------------------------

    def continue_bytes(self) -> bytes:
        self._continue_withheld = False
        return self._send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))

    def head_bytes(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The status line and headers. Without a Content-Length the body is chunked (or, for an
        HTTP/1.0 client, ends when the connection closes)."""
        # h11's framing rule: a response that has a body and no length is chunked to a 1.1 client.
        self._chunked = (
            not self._head_only
            and status not in (204, 304)
            and self._conn.their_http_version == b"1.1"
            and all(name.lower() != b"content-length" for name, _ in headers)
        )
        return self._send(h11.Response(status_code=status, headers=headers, reason=_phrase(status)))

    def data_bytes(self, data: bytes) -> bytes:
        """A piece of the response body; nothing for a HEAD request, whose response has none."""
        return b"" if self._head_only or not data else self._send(h11.Data(data=data))

    def end_bytes(self, trailers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
        """The end of the response: ``trailers`` follow a chunked body; any other has no room for them."""
        return self._send(h11.EndOfMessage(headers=list(trailers) if self._chunked else []))

    def error_bytes(self, status: int, message: str) -> bytes:
        """A whole error response that closes the connection, whatever state h11 is in; nothing
        once a response has begun (an error in the rest of a request answered early, such as
        trailers over the limit): the client would take it for the answer to its next request."""
        self.failed = True
        if self._conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return b""
        body = b"" if self._head_only else f"{status} {_phrase(status).decode()}: {message}\n".encode()
        head = f"HTTP/1.1 {status} {_phrase(status).decode()}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        return f"{head}content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body

    def _send(self, event: h11.Event) -> bytes:
        data = self._conn.send(event)
        assert data is not None  # only ConnectionClosed gives None, never sent here
        return data


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
