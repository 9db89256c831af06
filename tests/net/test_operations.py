"""What an operator sets and sees on ``serve`` of a socket guest: --limit-concurrency,
--max-requests, --metrics (scraped with prometheus_client's own parser), /healthz and
/readyz through a drain, --access-log and --log-format json. Real clients, real processes."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Served, ServeFactory, run_cli
from tests.http.conftest import component, component_dir  # noqa: F401 - fixtures, for the component soak

GUEST_LISTENING = r"http-hello\.wasm: listening on 127\.0\.0\.1:(\d+)"
METRICS = r"metrics on http://127\.0\.0\.1:(\d+)/metrics"


def _start(serve: ServeFactory, *flags: str) -> tuple[Served, int]:
    """Serve http-hello with ``flags``; returns it and the guest's host port."""
    served = serve("http-hello", *flags, wait=False)
    served.port = int(served.read_log_until(GUEST_LISTENING).group(1))
    return served, served.port


def _get(port: int, path: str = "/", close: bool = True) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"} if close else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _parse(text: str) -> Samples:
    """Prometheus text parsed by prometheus_client: sample name -> labels -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _scrape(port: int) -> Samples:
    status, body = _get(port, "/metrics")
    assert status == 200
    return _parse(body.decode())


def _until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_metrics_count_the_connections_made(serve: ServeFactory) -> None:
    served = serve("http-hello", "--metrics", "127.0.0.1:0", wait=False)
    guest_port = int(served.read_log_until(GUEST_LISTENING).group(1))
    metrics_port = int(served.read_log_until(METRICS).group(1))
    for _ in range(5):
        assert _get(guest_port) == (200, b"Hello, World!")
    keep = socket.create_connection(("127.0.0.1", guest_port))
    try:
        keep.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert keep.recv(65536).endswith(b"Hello, World!")
        found = _scrape(metrics_port)
    finally:
        keep.close()
    assert found["wasmhost_connections_accepted_total"][()] == 6
    assert found["wasmhost_connections_open"][()] == 1
    assert found["wasmhost_instances_live"][()] == 1
    assert found["wasmhost_guest_memory_bytes"][()] > 0
    calls = {dict(labels)["function"]: value for labels, value in found["wasmhost_host_calls_total"].items()}
    accepts = sum(value for name, value in calls.items() if name.startswith("sock_accept"))
    assert accepts >= 6 and calls["sock_send"] >= 6, calls
    assert found["wasmhost_suspensions_total"][()] > 0
    assert found["wasmhost_limit_hits_total"][(("limit", "concurrency"),)] == 0
    _until(lambda: _scrape(metrics_port)["wasmhost_connections_open"][()] == 0)


def test_probes_through_a_drain(serve: ServeFactory) -> None:
    served = serve("http-hello", "--metrics", "127.0.0.1:0", "--graceful-timeout", "10", wait=False)
    guest_port = int(served.read_log_until(GUEST_LISTENING).group(1))
    metrics_port = int(served.read_log_until(METRICS).group(1))
    assert _get(metrics_port, "/healthz") == (200, b"ok\n")
    assert _get(metrics_port, "/readyz") == (200, b"ready\n")
    busy = socket.create_connection(("127.0.0.1", guest_port))
    try:
        busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request in flight keeps the drain going
        time.sleep(0.2)
        served.proc.send_signal(signal.SIGTERM)
        served.read_log_until("draining 1 connection")
        assert _get(metrics_port, "/readyz") == (503, b"draining\n")
        assert _get(metrics_port, "/healthz") == (200, b"ok\n")
        busy.sendall(b"\r\n")
        assert busy.recv(65536).endswith(b"Hello, World!")
    finally:
        busy.close()
    assert served.proc.wait(10) == 0
    refused = socket.socket()
    try:
        assert refused.connect_ex(("127.0.0.1", metrics_port)) != 0  # the admin port closed with the guest
    finally:
        refused.close()


@pytest.mark.parametrize("style", [[], ["--env", "POLL_STYLE=mio-0.8.7"]], ids=["own-loop", "mio-0.8.7"])
def test_limit_concurrency_holds_new_connections_in_the_backlog(serve: ServeFactory, style: list[str]) -> None:
    served, port = _start(serve, *style, "--limit-concurrency", "2", "--metrics", "127.0.0.1:0")
    metrics_port = int(served.read_log_until(METRICS).group(1))
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    waiting = socket.create_connection(("127.0.0.1", port), timeout=5)  # the kernel completes the handshake
    try:
        for conn in held:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(65536).endswith(b"Hello, World!")
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        waiting.settimeout(0.5)
        try:
            early = waiting.recv(65536)
        except TimeoutError:
            early = b""
        assert early == b"", "the guest accepted past its limit"
        served.read_log_until(r"2 connections open, the --limit-concurrency limit")
        held[0].close()  # one slot frees: the waiting connection is accepted and answered
        waiting.settimeout(5)
        assert waiting.recv(65536).endswith(b"Hello, World!")
    finally:
        for conn in [*held, waiting]:
            conn.close()
    hits = _scrape(metrics_port)["wasmhost_limit_hits_total"][(("limit", "concurrency"),)]
    assert hits >= 1
    assert sum("--limit-concurrency limit" in line for line in served.log) == 1


@pytest.mark.parametrize("access_log", [True, False])  # without it, only the third accept is Python's
def test_max_requests_recycles_workers_without_a_crash(serve: ServeFactory, access_log: bool) -> None:
    served, port = _start(serve, "--max-requests", "3", *(["--access-log"] if access_log else []))
    answered = 0
    for _ in range(10):
        answered += _get(port) == (200, b"Hello, World!")
        time.sleep(0.05)
    assert answered == 10
    served.read_log_until(r"\[1\]: worker 1: 3 connections accepted \(--max-requests\)")
    served.read_log_until(r"worker 1 \(pid \d+\) recycled")
    code, _ = served.stop()
    log = "".join(served.log)
    assert code == 0, log
    assert "restarting in" not in log and "exited with code" not in log, log
    closed = r"\[\d\]: http-hello\.wasm: 127\.0\.0\.1:\d+ closed after [\d.]+ s, (\d+) bytes in, (\d+) bytes out"
    access = re.findall(closed, log)
    assert len(access) == (10 if access_log else 0) and all(int(i) > 0 and int(o) > 0 for i, o in access), log


def test_json_log_lines_and_the_access_log(serve: ServeFactory) -> None:
    served = serve("http-hello", "--log-format", "json", "--access-log", wait=False)
    line = served.read_log_until(r'^\{.*"message": "http-hello\.wasm: listening on').string
    port = int(re.search(r"127\.0\.0\.1:(\d+)", json.loads(line)["message"]).group(1))  # type: ignore[union-attr]
    assert _get(port) == (200, b"Hello, World!")
    served.read_log_until(r"closed after")
    served.stop()
    entries = [json.loads(text) for text in "".join(served.log).splitlines() if text.startswith("{")]
    assert entries and all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    access = [entry for entry in entries if entry["logger"] == "wasmhost.access"]
    assert len(access) == 1 and "bytes in" in access[0]["message"]
    guest_output = [text for text in "".join(served.log).splitlines() if not text.startswith("{")]
    assert all("Listening on" in text for text in guest_output), guest_output  # the guest's own stderr


def test_json_logs_of_a_trap_are_json_too(guest: Callable[[str], Path]) -> None:
    done = run_cli("run", "--log-format", "json", guest("trap"), "stack-overflow")
    assert done.returncode == 1
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert entries[0]["message"].endswith("guest trapped: stack overflow") and entries[0]["level"] == "error"
    assert len(entries) == 2 and "\n  at " in entries[1]["message"]  # the backtrace: one entry


def test_json_logs_name_the_worker(serve: ServeFactory) -> None:
    served = serve("http-hello", "--workers", "2", "--log-format", "json", wait=False)
    served.read_log_until(r'"worker": 2')
    served.stop()
    workers = {json.loads(text).get("worker") for text in "".join(served.log).splitlines() if text.startswith("{")}
    assert {1, 2} <= workers


def test_bad_operator_flags_one_line_exit_2() -> None:
    cases = {
        ("--metrics", "nonsense"): "--metrics nonsense: expected HOST:PORT",
        ("--metrics", "192.0.2.1:0"): "--metrics 192.0.2.1:0: cannot listen",
    }
    for flags, reason in cases.items():
        done = run_cli("serve", *flags, timeout=30)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"wasmhost: {reason}") and done.stderr.count("\n") == 1, done.stderr
    for flag in ("--limit-concurrency", "--max-requests"):
        done = run_cli("serve", flag, "0", timeout=30)
        assert done.returncode == 2 and "must be positive" in done.stderr


@pytest.mark.parametrize("servers", ["default,mio-0.8.7", "component"])
def test_soak_quick_keeps_fds_and_threads_flat(guest: object, request: pytest.FixtureRequest, servers: str) -> None:
    """A short soak (benchmarks/soak.py --quick, no keep-alive load): 2,000 short connections
    per server; the server's descriptors and threads end where they started."""
    env = dict(os.environ)
    if servers == "component":
        request.getfixturevalue("component")  # built by components/build.sh
        env["WASMHOST_CACHE_DIR"] = str(request.getfixturevalue("component_dir"))  # compiled once for the suite
    done = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--quick", "--servers", servers, "--connections", "2000",
         "--requests", "0", "--check"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fds: flat" in done.stdout and "threads: flat" in done.stdout, done.stdout


def test_each_worker_serves_its_own_metrics(serve: ServeFactory) -> None:
    served = serve("http-hello", "--workers", "2", "--metrics", "127.0.0.1:0", wait=False)
    wanted = {f"[{i}]: {what}" for i in (1, 2) for what in ("metrics", "listening")}
    while wanted:
        line = served.read_log_until(r"\[\d\]: (metrics on|http-hello\.wasm: listening on)").string
        wanted -= {w for w in wanted if w.split(": ")[0] in line and w.split(": ")[1] in line}
    ports = {int(m) for m in re.findall(METRICS, "".join(served.log))}
    assert len(ports) == 2
    for port in ports:
        assert _scrape(port)["wasmhost_instances_live"][()] == 1
        assert _get(port, "/readyz") == (200, b"ready\n")
    served.stop()


def _families() -> Samples:
    """This process's metrics, as ``/metrics`` would serve them."""
    from prometheus_client.exposition import generate_latest

    from wasmhost import admin

    return _parse(generate_latest(admin.registry()).decode())


def test_traps_timeouts_and_host_calls_are_counted_by_kind() -> None:
    from wasmhost import GuestTrap, Host, Instance, Limits, Module, Timeout

    before = _families()
    trap = Module(b'(module (memory (export "memory") 1) (func (export "_start") unreachable))', name="t")
    spin = Module(b'(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))', name="s")
    with Instance(trap, Host()) as instance, contextlib.suppress(GuestTrap):
        instance.run()
    with Instance(spin, Host(limits=Limits(timeout=0.05))) as instance, contextlib.suppress(Timeout):
        instance.run()
    after = _families()

    def grew(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return after[name].get(labels, 0) - before.get(name, {}).get(labels, 0)

    assert grew("wasmhost_traps_total", (("kind", "unreachable"),)) == 1
    assert grew("wasmhost_traps_total", (("kind", "timeout"),)) == 1
    assert grew("wasmhost_limit_hits_total", (("limit", "timeout"),)) == 1
    assert after["wasmhost_instances_live"][()] == before["wasmhost_instances_live"][()]
