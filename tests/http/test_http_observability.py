"""What an operator sees of ``wasmhost serve`` of a wasi:http component: ``--metrics`` (scraped
and parsed with prometheus_client's own parser) counts exactly the requests a test made, by
status, with their latency, the instances and the traps; ``--access-log`` writes one common-log
line per request; ``/readyz`` follows a drain. With ``--workers 2`` each worker counts its own."""

from __future__ import annotations

import collections
import re
import signal
import socket

import pytest

from tests.conftest import Served
from tests.http.test_front_end import raw, read_until, status_of
from tests.http.test_limit_flags import ServeComponent, serve_component  # noqa: F401 - the fixture
from tests.net.test_operations import METRICS, Samples, _get, _scrape, _until

#: One line of the Common Log Format, after the log's own ``wasmhost[N]: `` prefix.
COMMON_LOG = r': (\S+) - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "([^"]*)" (\d{3}) (\d+|-)$'

#: The requests the test makes, each on its own connection: (bytes, the access log's request line, status).
REQUESTS = [
    *[(b"POST /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", "POST /ok HTTP/1.1", 200)]
    * 4,
    (b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", "POST /big HTTP/1.1", 413),
    (b'POST /a"b\\c HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n', r"POST /a\x22b\x5cc HTTP/1.1",
     413),  # a quote and a backslash, escaped in the log
    (b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1100 + b"\r\n\r\n", "GET /headers HTTP/1.1", 431),
    (b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "POST /smuggle HTTP/1.1", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", "-", 408),  # never complete: the header timeout answers
]  # fmt: skip


def _metrics_ports(served: Served, workers: int) -> list[int]:
    return [int(served.read_log_until(METRICS).group(1)) for _ in range(workers)]


def _total(scrapes: list[Samples], name: str, **labels: str) -> float:
    """A sample summed over every worker's scrape (0 where absent)."""
    key = tuple(sorted(labels.items()))
    return sum(scrape.get(name, {}).get(key, 0) for scrape in scrapes)


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_and_access_log_count_the_requests_made(
    serve_component: ServeComponent,  # noqa: F811 - the imported fixture
    workers: int,
) -> None:
    served = serve_component(
        "echo", "--workers", str(workers), "--metrics", "127.0.0.1:0", "--access-log",
        "--max-body-bytes", "100", "--max-header-bytes", "1024", "--header-timeout", "0.5",
    )  # fmt: skip
    ports = _metrics_ports(served, workers)
    for request, _line, status in REQUESTS:
        reply = raw(served.port, request)
        assert status_of(reply) == status, reply
    logged = [served.read_log_until(COMMON_LOG) for _ in REQUESTS]

    codes = collections.Counter(str(status) for _, _, status in REQUESTS)
    assert len(REQUESTS) == 9 and codes == {"200": 4, "413": 2, "431": 1, "400": 1, "408": 1}

    scrapes: list[Samples] = []

    def settled() -> bool:
        scrapes[:] = [_scrape(port) for port in ports]
        idle = _total(scrapes, "wasmhost_connections_open") == 0
        return idle and _total(scrapes, "wasmhost_instances_pooled") == 2 * workers  # refilled off the request path

    _until(settled, timeout=10)
    for code, count in codes.items():
        assert _total(scrapes, "wasmhost_http_requests_total", code=code) == count, code
    assert sum(sum(scrape.get("wasmhost_http_requests_total", {}).values()) for scrape in scrapes) == len(REQUESTS)
    histogram = "wasmhost_http_request_duration_seconds"
    assert _total(scrapes, f"{histogram}_count") == len(REQUESTS)
    assert _total(scrapes, f"{histogram}_bucket", le="+Inf") == len(REQUESTS)
    assert _total(scrapes, f"{histogram}_bucket", le="0.25") < len(REQUESTS)  # the 408 came after 0.5 s
    assert _total(scrapes, f"{histogram}_sum") >= 0.5
    # Host calls by function count the components' too: one response per request the guest answered.
    outparam = "wasi:http/types@0.2.0#[static]response-outparam.set"
    assert _total(scrapes, "wasmhost_host_calls_total", function=outparam) == codes["200"]
    assert _total(scrapes, "wasmhost_connections_accepted_total") == len(REQUESTS)
    for limit, hits in (("max_body_bytes", 2), ("max_header_bytes", 1), ("header_timeout", 1)):
        assert _total(scrapes, "wasmhost_limit_hits_total", limit=limit) == hits, limit
    assert _total(scrapes, "wasmhost_instances_recycled_total") == 4  # one per request that reached the component
    assert _total(scrapes, "wasmhost_instances_live") == 2 * workers
    assert not any(scrape.get("wasmhost_traps_total") for scrape in scrapes)

    entries = [(found.group(1), found.group(2), int(found.group(3)), found.group(4)) for found in logged]
    assert {peer for peer, *_ in entries} == {"127.0.0.1"}
    assert collections.Counter((line, status) for _, line, status, _ in entries) == collections.Counter(
        (line, status) for _, line, status in REQUESTS
    )
    assert all(size == "2" for _, _, status, size in entries if status == 200)  # the echoed body
    assert all(size.isdigit() for _, _, status, size in entries if status != 200)  # the error's text
    assert served.stop(timeout=20)[0] == 0
    assert len(re.findall(COMMON_LOG, "".join(served.log), re.M)) == len(REQUESTS)  # one line each, no more


def test_traps_are_counted_by_kind(serve_component: ServeComponent) -> None:  # noqa: F811 - the imported fixture
    served = serve_component("trap", "--metrics", "127.0.0.1:0", "--access-log")
    (port,) = _metrics_ports(served, 1)
    for _ in range(3):
        assert status_of(raw(served.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) == 500
    logged = [served.read_log_until(COMMON_LOG) for _ in range(3)]
    assert {(found.group(2), found.group(3)) for found in logged} == {("GET / HTTP/1.1", "500")}
    found = _scrape(port)
    assert found["wasmhost_traps_total"] == {(("kind", "unreachable"),): 3}
    assert found["wasmhost_http_requests_total"] == {(("code", "500"),): 3}
    assert found["wasmhost_instances_recycled_total"][()] == 3  # a failed instance is never reused
    served.stop()


def test_probes_through_a_drain(serve_component: ServeComponent) -> None:  # noqa: F811 - the imported fixture
    served = serve_component("hello", "--metrics", "127.0.0.1:0", "--graceful-timeout", "10")
    (port,) = _metrics_ports(served, 1)
    assert _get(port, "/readyz") == (200, b"ready\n")
    assert _scrape(port)["wasmhost_instances_pooled"][()] == 2  # warmed before it listened
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as busy:
        busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # in flight: the drain waits for it
        _until(lambda: _scrape(port)["wasmhost_connections_open"][()] == 1)
        served.proc.send_signal(signal.SIGTERM)
        _until(lambda: _get(port, "/readyz") == (503, b"draining\n"))
        assert _get(port, "/healthz") == (200, b"ok\n")
        busy.sendall(b"\r\n")
        assert read_until(busy, b"Hello, World!").startswith(b"HTTP/1.1 200 OK")
    assert served.proc.wait(10) == 0
