"""``serve --metrics ADDR``: the admin endpoint beside the guest, on the same loop.

``GET /metrics`` is Prometheus text (prometheus-client), read from ``stats`` at scrape time;
``/healthz`` answers 200 while the process runs; ``/readyz`` 200 once the guest listens and
503 while it drains. Served by wasmhost's own HTTP/1.1 front end (``wasmhost.http``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from . import stats
from .errors import ConfigError
from .http import Request, Response, Server
from .net.policy import split_host_port
from .server import Readiness, listening_socket

log = logging.getLogger("wasmhost")


class _StatsCollector(Collector):
    """Every wasmhost metric, from one ``stats.snapshot()`` per scrape."""

    def collect(self) -> Iterator[Metric]:
        now = stats.snapshot()
        yield CounterMetricFamily(
            "wasmhost_connections_accepted", "Connections the guests accepted", now.connections_accepted
        )
        yield GaugeMetricFamily("wasmhost_connections_open", "Accepted connections open now", now.connections_open)
        yield GaugeMetricFamily("wasmhost_instances_live", "Guest instances not yet closed", now.instances_live)
        yield GaugeMetricFamily(
            "wasmhost_instances_pooled", "wasi:http instances ready for a request", now.instances_pooled
        )
        yield CounterMetricFamily(
            "wasmhost_instances_recycled", "wasi:http instances thrown away after serving", now.instances_recycled
        )
        yield GaugeMetricFamily("wasmhost_guest_memory_bytes", "Linear memory of the live guests", now.memory_bytes)
        yield CounterMetricFamily(
            "wasmhost_suspensions", "Host calls that suspended a guest to wait on the loop", now.suspensions
        )
        for name, help_text, label, counts in (
            ("wasmhost_traps", "Guest calls that ended abnormally, by kind", "kind", now.traps),
            ("wasmhost_host_calls", "Host function calls, by function", "function", now.host_calls),
            ("wasmhost_limit_hits", "Times an operator's limit took effect, by limit", "limit", now.limit_hits),
            ("wasmhost_http_requests", "wasi:http requests answered, by status", "code", now.requests),
        ):
            family = CounterMetricFamily(name, help_text, labels=[label])
            for value, count in sorted(counts.items()):
                family.add_metric([value], count)
            yield family
        bounds = [*map(floatToGoString, stats.LATENCY_BUCKETS), "+Inf"]
        yield HistogramMetricFamily(
            "wasmhost_http_request_duration_seconds",
            "wasi:http requests from their first byte to the end of their answer",
            buckets=list(zip(bounds, itertools.accumulate(now.latency), strict=True)),
            sum_value=now.latency_sum,
        )


def registry() -> CollectorRegistry:
    """A registry holding wasmhost's metrics (and nothing else)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_StatsCollector())
    return reg


def parse(spec: str) -> tuple[str, int]:
    """``--metrics HOST:PORT`` (``[V6]:PORT``), refused with one line naming the flag."""
    host, port = split_host_port(spec)
    if not host or port is None or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--metrics {spec}: expected HOST:PORT, e.g. 127.0.0.1:9090 (port 0: any free port)")
    return host, int(port)


def for_worker(spec: str, index: int) -> str:
    """Worker ``index``'s admin address: port + index - 1 (port 0 stays 0: each its own)."""
    host, port = parse(spec)
    port = port + index - 1 if port else 0
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(spec: str, reuse_port: bool = False) -> socket.socket:
    """The admin socket for ``--metrics HOST:PORT`` (port 0: the OS picks), bound and listening.

    ``reuse_port``: a recycled worker and its replacement share the port while both run.
    """
    host, port = parse(spec)
    try:
        return listening_socket(host, port, reuse_port, backlog=128)
    except OSError as exc:
        raise ConfigError(f"--metrics {spec}: cannot listen: {exc.strerror or exc}") from None


def endpoint(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Admin:
    """The admin endpoint on ``sock`` (it takes ownership) for the guest ``serving`` runs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.registry = registry()

    async def __call__(self, serving: Readiness) -> None:
        """A ``server.Companion``: serve until cancelled, then close every admin socket."""
        server = Server(lambda request, response: self._handle(request, response, serving))
        try:
            await server.start(sock=self.sock)
            log.info("metrics on %s/metrics, probes on /healthz and /readyz", endpoint(self.sock))
            await asyncio.Event().wait()
        finally:
            server.close()
            await server.wait_closed()
            self.sock.close()

    async def _handle(self, request: Request, response: Response, serving: Readiness) -> None:
        path = request.target.split("?", 1)[0]
        if request.method not in ("GET", "HEAD"):
            status, body, kind = 405, b"method not allowed\n", "text/plain"
        elif path == "/metrics":
            status, body, kind = 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        elif path == "/healthz":
            status, body, kind = 200, b"ok\n", "text/plain"
        elif path == "/readyz":
            ready = serving.ready
            status, kind = (200 if ready else 503), "text/plain"
            body = b"ready\n" if ready else b"draining\n" if serving.draining else b"not listening yet\n"
        else:
            status, body, kind = 404, b"not found\n", "text/plain"
        await response.start(status, [("content-type", kind), ("content-length", str(len(body)))])
        if request.method == "GET":
            await response.write(body)
