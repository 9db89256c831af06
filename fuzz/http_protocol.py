"""Fuzz target: the HTTP front end's sans-IO ``ServerProtocol`` fed arbitrary bytes in arbitrary chunks.

An input is a header byte and the bytes a client sends:

    byte 0 bits 0-5   seed of the chunk sizes (1 to 64 bytes, or all at once)
    byte 0 bit 6      the handler answers at once, without reading the body (else after it)
    byte 0 bit 7      the client half-closes after its bytes (``receive(b"")``)
    the rest          the client's bytes

A small driver plays the server's part the way ``http.server`` does: it answers each request
with a 200 carrying the body's length, sends ``100 Continue`` when the client waits for it and
the handler reads, answers ``Rejected`` with the error response, and goes on with pipelined
requests. A finding is: an exception out of the protocol; a response that h11, as a client,
cannot parse, or bytes after the last response (a body in an answer to HEAD); a request head
reaching the handler with both ``Content-Length`` and
``Transfer-Encoding`` or with two ``Content-Length`` values; more body than ``max_body_bytes``
reaching the handler; more than ``max_header_bytes`` left in the parser's buffer while it waits
for more of a request.
"""

from __future__ import annotations

import attrs
import h11

from wasmhost.http.limits import HttpLimits
from wasmhost.http.protocol import BodyData, BodyEnd, PeerClosed, Rejected, RequestHead, ServerProtocol

LIMITS = HttpLimits(max_header_bytes=1024, max_body_bytes=4096)


def chunks(seed: int, data: bytes) -> list[bytes]:
    """``data`` cut into pieces whose sizes come from ``seed`` (0: one piece)."""
    if seed == 0:
        return [data]
    pieces, pos, state = [], 0, seed
    while pos < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFF_FFFF
        size = 1 + (state >> 16) % 64
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


@attrs.define
class _Driver:
    """The server's part, synchronously: what it handed the handler and what it sent."""

    http: ServerProtocol
    eager: bool  # answer before reading the body
    heads: list[RequestHead] = attrs.Factory(list)
    methods: list[bytes] = attrs.Factory(list)  # of the requests the sent responses answer
    sent: bytearray = attrs.Factory(bytearray)
    body: int = 0
    answered: bool = False
    draining: bool = False
    done: bool = False  # the connection is closed (or lingering after an error)

    def feed(self, data: bytes) -> None:
        if not self.done:
            self.dispatch(self.http.receive(data))
        if not self.done and not self.http.failed:
            buffered = len(self.http._conn.trailing_data[0])
            if self.http.waiting_for_head or not self.http.request_complete:
                assert buffered <= LIMITS.max_header_bytes, f"{buffered} bytes buffered in the parser"

    def dispatch(self, events: list[object]) -> None:
        for event in events:
            if self.done:
                return
            if isinstance(event, RequestHead):
                self.start(event)
            elif isinstance(event, BodyData):
                assert not self.draining or self.answered
                self.body += len(event.data)
                assert self.body <= LIMITS.max_body_bytes, f"{self.body} body bytes reached the handler"
            elif isinstance(event, BodyEnd):
                if not self.answered:
                    self.answer()
                self.next_request()
            elif isinstance(event, Rejected):
                answer = self.http.error_bytes(event.status, event.reason)
                if answer:  # none once a response has begun: then the connection just closes
                    self.methods.append(b"")  # which request: the shadow parse tells (see ``_methods``)
                self.sent += answer
                self.done = True
            elif isinstance(event, PeerClosed):
                self.done = True

    def start(self, head: RequestHead) -> None:
        names = [name for name, _value in head.headers]
        assert not (b"content-length" in names and b"transfer-encoding" in names), f"smuggling: {head}"
        assert len({v for n, v in head.headers if n == b"content-length"}) <= 1, f"two lengths: {head}"
        self.heads.append(head)
        self.body = 0
        self.answered = False
        if self.eager:
            self.answer()
            if not self.http.request_complete:
                if not self.http.reusable:
                    self.done = True
                else:
                    self.draining = True
        elif self.http.expects_continue:
            self.sent += self.http.continue_bytes()

    def answer(self) -> None:
        head = self.heads[-1]
        text = f"{head.method} {len(head.target)} {self.body}\n".encode()
        self.methods.append(head.method.encode())
        self.sent += self.http.head_bytes(200, [(b"content-length", str(len(text)).encode())])
        self.sent += self.http.data_bytes(text)
        self.sent += self.http.end_bytes()
        self.answered = True

    def next_request(self) -> None:
        self.draining = False
        if not self.http.reusable:
            self.done = True
            return
        self.dispatch(self.http.next_request())


def _methods(data: bytes) -> list[bytes]:
    """The methods of the requests in ``data``, as plain h11 with no size limit reads them: a
    refused request's method, which the protocol does not report, decides whether its error
    response may have a body (not after HEAD)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(data) + 1)
    conn.receive_data(data)
    methods: list[bytes] = []
    try:
        for _ in range(len(data) + 8):  # each event consumes bytes; a bound in case one repeats
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                break
            if isinstance(event, h11.Request):
                methods.append(bytes(event.method))
            elif isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=404, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
    except h11.ProtocolError:
        pass
    return methods


def _parse_responses(sent: bytes, methods: list[bytes]) -> tuple[int, bytes]:
    """Read ``sent`` back as h11's client would, as the answers to requests with ``methods``:
    how many complete responses it holds, and the bytes left over after them."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(sent)
    complete = 0
    for method in methods:
        client.send(h11.Request(method=method or b"GET", target="/", headers=[("host", "fuzz")]))
        client.send(h11.EndOfMessage())
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                return complete, client.trailing_data[0]
            if isinstance(event, h11.EndOfMessage):
                complete += 1
                break
        if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
            break
        client.start_next_cycle()
    return complete, client.trailing_data[0]


def one_input(data: bytes) -> None:
    if not data:
        return
    driver = _Driver(ServerProtocol(LIMITS), eager=bool(data[0] & 0x40))
    for piece in chunks(data[0] & 0x3F, data[1:]):
        driver.feed(piece)
    if data[0] & 0x80:
        driver.feed(b"")
    shadow = _methods(data[1:])
    methods = [method or (shadow[i] if i < len(shadow) else b"") for i, method in enumerate(driver.methods)]
    complete, extra = _parse_responses(bytes(driver.sent), methods)
    assert complete == len(methods), f"{len(methods)} responses sent (to {methods}), {complete} parse"
    assert not extra, f"{len(extra)} bytes after the responses (to {methods}): {extra[:80]!r}"


def _request(method: str = "GET", target: str = "/", headers: str = "Host: fuzz\r\n", body: bytes = b"") -> bytes:
    return f"{method} {target} HTTP/1.1\r\n{headers}\r\n".encode() + body


#: Hostile requests: the seeds here and of ``serve_bytes``.
HOSTILE: dict[str, bytes] = {
    "get": _request(),
    "head": _request("HEAD"),
    "post-length": _request("POST", headers="Host: fuzz\r\nContent-Length: 5\r\n", body=b"hello"),
    "post-chunked": _request(
        "POST", headers="Host: fuzz\r\nTransfer-Encoding: chunked\r\n", body=b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    ),
    "pipelined": _request("GET", "/a") + _request("HEAD", "/b") + _request("POST", "/c", "Content-Length: 2\r\n", b"o"),
    "smuggle-cl-te": _request(
        "POST", headers="Host: fuzz\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n", body=b"0\r\n\r\nG"
    )
    + _request("GET", "/admin"),
    "smuggle-te-cl": _request(
        "POST", headers="Host: fuzz\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n", body=b"5c\r\nGPOST / "
    ),
    "smuggle-two-lengths": _request("POST", headers="Content-Length: 3\r\nContent-Length: 40\r\n", body=b"abc")
    + _request("GET", "/admin"),
    "smuggle-te-space": _request("POST", headers="Transfer-Encoding : chunked\r\nContent-Length: 3\r\n", body=b"abc"),
    "smuggle-te-twice": _request("POST", headers="Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
    "smuggle-te-list": _request("POST", headers="Transfer-Encoding: gzip, chunked\r\n", body=b"0\r\n\r\n"),
    "length-signed": _request("POST", headers="Content-Length: +3\r\n", body=b"abc"),
    "length-huge": _request("POST", headers="Content-Length: 99999999999999999999999\r\n"),
    "chunk-size-huge": _request("POST", headers="Transfer-Encoding: chunked\r\n", body=b"fffffffffffffffff\r\nx"),
    "body-over-limit": _request("POST", headers="Content-Length: 5000\r\n", body=b"x" * 5000),
    "chunked-over-limit": _request("POST", headers="Transfer-Encoding: chunked\r\n", body=b"fff\r\n" + b"y" * 4095),
    "continue": _request("PUT", headers="Host: fuzz\r\nExpect: 100-continue\r\nContent-Length: 4\r\n", body=b"data"),
    "header-flood": _request(headers="".join(f"X-H{i}: {'v' * 20}\r\n" for i in range(200))),
    "long-target": _request(target="/" + "a" * 3000),
    "obs-fold": _request(headers="Host: fuzz\r\nX-Folded: a\r\n b\r\n"),
    "bare-lf": b"GET / HTTP/1.1\nHost: fuzz\n\n",
    "nul-in-header": _request(headers="Host: fu\0zz\r\n"),
    "http10-keep-alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + _request(),
    "http09": b"GET /\r\n\r\n",
    "connect": _request("CONNECT", "example.com:443"),
    "upgrade": _request(headers="Host: fuzz\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"),
    "leading-crlf": b"\r\n\r\n" + _request(),
    "binary": bytes(range(256)),
}


def seeds() -> dict[str, bytes]:
    """Each hostile request whole, in small pieces, with an eager handler, and half-closed."""
    out = {}
    for name, raw in HOSTILE.items():
        out[f"{name}-whole"] = b"\x00" + raw
        out[f"{name}-pieces"] = b"\x07" + raw
        out[f"{name}-eager-eof"] = b"\xc3" + raw
    return out
