"""The sans-I/O HTTP rules: bytes in, events out; no socket, no loop."""

from __future__ import annotations

import pytest

from wasmhost.http import HttpLimits
from wasmhost.http.protocol import BodyData, BodyEnd, Event, PeerClosed, Rejected, RequestHead, ServerProtocol

LIMITS = HttpLimits(max_header_bytes=1024, max_body_bytes=100)


def events(data: bytes, limits: HttpLimits = LIMITS) -> list[Event]:
    return ServerProtocol(limits).receive(data)


def test_a_request_with_a_body() -> None:
    got = events(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 5\r\n\r\nhello")
    assert got == [
        RequestHead(
            "POST", "/a?b=1", ((b"host", b"x"), (b"x-a", b"1"), (b"x-a", b"2"), (b"content-length", b"5")), "1.1"
        ),
        BodyData(b"hello"),
        BodyEnd(),
    ]


def test_a_chunked_body_arrives_piece_by_piece() -> None:
    http = ServerProtocol(LIMITS)
    head = http.receive(b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert [type(e) for e in head] == [RequestHead]
    assert http.receive(b"3\r\nabc\r\n") == [BodyData(b"abc")]
    assert http.receive(b"2\r\nde\r\n0\r\n\r\n") == [BodyData(b"de"), BodyEnd()]


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GARBAGE\r\n\r\n", 400, "illegal request line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header : y\r\n\r\n", 400, "illegal header line"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "smuggling"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "chunk"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000 + b"\r\n\r\n", 431, "headers over 1024 bytes"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000, 431, ""),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413, "Content-Length 101 over 100"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + b"a" * 101, 413, "body over 100"),
    ],
)
def test_bad_requests_are_rejected_before_any_handler(request_bytes: bytes, status: int, reason: str) -> None:
    http = ServerProtocol(LIMITS)
    got = http.receive(request_bytes)
    rejected = got[-1]
    assert isinstance(rejected, Rejected), got
    assert (rejected.status, reason in rejected.reason) == (status, True)
    assert not any(isinstance(e, BodyEnd) for e in got)
    assert http.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []  # nothing more is read


def test_pipelined_requests_come_one_at_a_time() -> None:
    http = ServerProtocol(LIMITS)
    first = http.receive(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [e.target for e in first if isinstance(e, RequestHead)] == ["/1"]
    assert http.has_buffered_bytes
    http.head_bytes(200, [(b"content-length", b"0")])
    http.end_bytes()
    assert http.reusable
    second = http.next_request()
    assert [e.target for e in second if isinstance(e, RequestHead)] == ["/2"]


def test_a_head_response_has_no_body_bytes() -> None:
    http = ServerProtocol(LIMITS)
    http.receive(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = http.head_bytes(200, [(b"content-length", b"13")])
    assert head.endswith(b"content-length: 13\r\n\r\n")
    assert http.data_bytes(b"Hello, World!") == b""
    assert http.end_bytes() == b""


def test_without_a_length_the_response_is_chunked() -> None:
    http = ServerProtocol(LIMITS)
    http.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"transfer-encoding: chunked" in http.head_bytes(200, []).lower()
    assert http.data_bytes(b"abc") == b"3\r\nabc\r\n"
    assert http.end_bytes() == b"0\r\n\r\n"


def test_expect_100_continue_is_seen_and_answered() -> None:
    http = ServerProtocol(LIMITS)
    http.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert http.expects_continue
    assert http.continue_bytes() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not http.expects_continue


def test_error_responses_close_the_connection() -> None:
    http = ServerProtocol(LIMITS)
    http.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = http.error_bytes(504, "no response within 1s")
    head, body = data.split(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 504 Gateway Timeout"
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
    assert body == b"504 Gateway Timeout: no response within 1s\n"


def test_the_client_closing_between_requests() -> None:
    http = ServerProtocol(LIMITS)
    assert http.receive(b"") == [PeerClosed()]


def test_a_withheld_100_continue_ends_the_connection() -> None:
    """Answered without reading the body: the client may or may not send it, so no next request."""
    http = ServerProtocol(LIMITS)
    http.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    http.head_bytes(200, [(b"content-length", b"0")])
    http.end_bytes()
    assert not http.reusable


def test_an_unread_body_may_be_discarded_to_go_on() -> None:
    http = ServerProtocol(LIMITS)
    http.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
    http.head_bytes(200, [(b"content-length", b"0")])
    http.end_bytes()
    assert http.reusable and not http.request_complete
