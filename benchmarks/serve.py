"""HTTP requests/s and latency: the http-hello guest under wasmhost beside two plain uvloop servers.

Run: ``python benchmarks/serve.py [--duration S | --quick] [--scenarios 1,50,close]``. Per scenario,
each server (wasmhost, uvloop + h11, uvloop + httptools; the baselines answer with the guest's exact
bytes) starts fresh on an OS-picked 127.0.0.1 port, is warmed up for 1 s, loaded with ``wrk -t1``
and stopped; one server at a time, so a 2-core machine measures the server and not the contention.
A fresh wasmhost per scenario makes its ``--host-call-stats`` a per-scenario count. Without wrk, a
small asyncio client of ours applies the same scenarios; its figures are less precise.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import uvloop

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "rust-guests" / "out" / "http-hello.wasm"
BASELINES = ROOT / "benchmarks" / "baselines"
SERVERS = {
    "wasmhost": [
        *(sys.executable, "-m", "wasmhost", "serve", str(GUEST)),
        *("--host", "127.0.0.1", "-p", "0:8080", "--host-call-stats"),
    ],
    "h11": [sys.executable, str(BASELINES / "h11_server.py"), "--port", "0"],
    "httptools": [sys.executable, str(BASELINES / "httptools_server.py"), "--port", "0"],
}
WARMUP_S = 1
# One keep-alive request, then one that asks to close: the exchange compared across servers.
PROBE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
PROBE_REQUESTS = 2
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    connections: int
    close: bool


SCENARIOS = (
    Scenario("1", "1 conn keep-alive", 1, close=False),
    Scenario("50", "50 conn keep-alive", 50, close=False),
    Scenario("close", "50 conn close", 50, close=True),
)


@dataclass(frozen=True)
class Load:
    """What one load run measured; ``problems`` holds anything the client flagged."""

    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    problems: tuple[str, ...] = ()


@dataclass
class Row:
    """One server in one scenario, filled in by ``measure``."""

    scenario: Scenario
    server: str
    load: Load | None = None
    reply: bytes | None = None
    host_calls: str | None = None
    problems: list[str] = field(default_factory=list)


LoadFn = Callable[[int, Scenario, float], Load]


class Server:
    """One server process on an OS-picked port; terminated and reaped on exit, whatever happened."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.returncode: int | None = None
        self.log = ""
        self._stderr: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        # stderr goes to a file so a chatty server can never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                SERVERS[self.name],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,  # Ctrl-C reaches us only; __exit__ stops the server
            )
            self.port = self._wait_for_port(self._proc, self._stderr)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop()

    def _wait_for_port(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stderr.seek(0)
            found = LISTENING.search(stderr.read())
            if found:
                return int(found[1])
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({proc.returncode}) before listening:\n{self._read_log()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} printed no listening line within {timeout:.0f} s:\n{self._read_log()}")

    def _read_log(self) -> str:
        assert self._stderr is not None
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self.returncode = self._proc.returncode
        if self._stderr is not None:
            self.log = self._read_log()
            self._stderr.close()
            self._stderr = None


def probe(port: int) -> bytes:
    """Everything the server sends for ``PROBE`` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(PROBE)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def host_calls(log: str) -> Counter[str]:
    """The ``host-calls NAME N`` lines wasmhost prints at exit with ``--host-call-stats``."""
    return Counter({m[1]: int(m[2]) for m in re.finditer(r"^host-calls (\S+) (\d+)$", log, re.M)})


# --- load generators ---------------------------------------------------------------------------


def wrk(port: int, scenario: Scenario, seconds: float) -> Load:
    command = ["wrk", "-t1", f"-c{scenario.connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if scenario.close:
        command += ["-H", "Connection: close"]
    done = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    total = re.search(r"(\d+) requests in", done.stdout)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode or not total or not rps:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    problems = []
    if non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout):
        problems.append(f"non-2xx {non2xx[1]}")
    if errors := re.search(r"Socket errors: (.+)", done.stdout):
        problems.append(f"socket errors: {errors[1].strip()}")
    return Load(int(total[1]), float(rps[1]), _wrk_ms(done.stdout, "50%"), _wrk_ms(done.stdout, "99%"), tuple(problems))


_WRK_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _wrk_ms(output: str, percentile: str) -> float | None:
    found = re.search(rf"^\s*{percentile}\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    return float(found[1]) * _WRK_UNITS_MS[found[2]] if found else None


def asyncio_client(port: int, scenario: Scenario, seconds: float) -> Load:
    """The wrk stand-in: one task per connection on uvloop; its latency includes our own overhead."""
    return uvloop.run(_client(port, scenario, seconds))


async def _client(port: int, scenario: Scenario, seconds: float) -> Load:
    loop = asyncio.get_running_loop()
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (b"Connection: close\r\n" if scenario.close else b"") + b"\r\n"
    latencies: list[float] = []
    problems: Counter[str] = Counter()
    deadline = loop.time() + seconds

    async def connection() -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while loop.time() < deadline:
            start = time.perf_counter()
            try:
                if streams is None:
                    streams = await asyncio.open_connection("127.0.0.1", port)
                reader, writer = streams
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                await reader.readexactly(int(length[1]) if length else 0)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                problems[f"socket errors: {type(exc).__name__}"] += 1
                _close(streams)
                streams = None
                continue
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 2"):
                problems["non-2xx"] += 1
            if scenario.close:
                _close(streams)
                streams = None
        _close(streams)

    start = time.perf_counter()
    tasks = [asyncio.ensure_future(connection()) for _ in range(scenario.connections)]
    _, stuck = await asyncio.wait(tasks, timeout=seconds + 2)
    for task in stuck:
        task.cancel()
    if stuck:
        problems["connections stuck past the end (timeout)"] = len(stuck)
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else None
    return Load(
        requests=len(latencies),
        rps=len(latencies) / elapsed,
        p50_ms=cuts[49] * 1e3 if cuts else None,
        p99_ms=cuts[98] * 1e3 if cuts else None,
        problems=tuple(f"{what} {n}" for what, n in problems.items()),
    )


def _close(streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if streams is not None:
        streams[1].close()


# --- the run -----------------------------------------------------------------------------------


def measure(row: Row, load: LoadFn, seconds: float) -> None:
    """Start ``row.server`` fresh, record its reply, warm it up, load it, stop it; fills ``row``."""
    with Server(row.server) as server:
        row.reply = probe(server.port)
        warmup = load(server.port, row.scenario, WARMUP_S)
        row.load = load(server.port, row.scenario, seconds)
    row.problems += row.load.problems
    if server.returncode != 0:
        row.problems.append(f"exit status {server.returncode}")
    if row.server == "wasmhost":
        calls = host_calls(server.log)
        requests = PROBE_REQUESTS + warmup.requests + row.load.requests
        if not calls or not requests:
            row.problems.append("no host-call stats in wasmhost's stderr")
            return
        top = ", ".join(
            f"{name} {n / requests:.2f}" for name, n in calls.most_common() if name != "total" and n / requests >= 0.005
        )
        row.host_calls = f"host calls/request {calls['total'] / requests:.2f}: {top}"


def print_table(rows: list[Row]) -> None:
    head = ("scenario", "server", "requests", "req/s", "p50 ms", "p99 ms", "wasmhost/x")
    print("{:<19} {:<10} {:>9} {:>9} {:>8} {:>8} {:>10}".format(*head))
    wasmhost: Load | None = None
    for row in rows:
        label = row.scenario.label if row.server == "wasmhost" else ""
        if row.server == "wasmhost":
            wasmhost = row.load
        if row.load is None:
            print(f"{label:<19} {row.server:<10} {'failed' if row.problems else 'not run':>9}")
        else:
            ratio = f"{wasmhost.rps / row.load.rps:.2f}x" if row.server != "wasmhost" and wasmhost else ""
            line = (
                f"{label:<19} {row.server:<10} {row.load.requests:>9} {row.load.rps:>9,.0f}"
                f" {_ms(row.load.p50_ms):>8} {_ms(row.load.p99_ms):>8} {ratio:>10}"
            )
            print(line.rstrip())
        for note in [*([row.host_calls] if row.host_calls else []), *(f"! {p}" for p in row.problems)]:
            print(f"{'':<19} {note}")


def compare_replies(rows: list[Row]) -> str:
    """Whether each baseline sent the very bytes wasmhost's guest sent for ``PROBE``."""
    reference = next((row.reply for row in rows if row.server == "wasmhost" and row.reply), None)
    if reference is None:
        return "reply bytes: not compared (no wasmhost reply)"
    verdicts = {
        row.server: "identical" if row.reply == reference else f"DIFFERENT: {row.reply!r}"
        for row in rows
        if row.server != "wasmhost" and row.reply is not None
    }
    return "reply bytes vs wasmhost: " + ", ".join(f"{name} {verdict}" for name, verdict in verdicts.items())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def targets(rows: list[Row]) -> str:
    """The goals wasmhost is measured against, as PASS/MISS (never an assertion)."""
    found = {(row.scenario.name, row.server): row.load for row in rows}
    wasm50, h11_50, wasm1 = found.get(("50", "wasmhost")), found.get(("50", "h11")), found.get(("1", "wasmhost"))
    if wasm50 and h11_50:
        ratio = wasm50.rps / h11_50.rps
        throughput = f"wasmhost/h11 at 50 conn {ratio:.2f}x (>= 1.0x) {'PASS' if ratio >= 1.0 else 'MISS'}"
    else:
        throughput = "wasmhost/h11 at 50 conn: not measured"
    if wasm1 and wasm1.p99_ms is not None:
        verdict = "PASS" if wasm1.p99_ms < 5 else "MISS"
        latency = f"wasmhost p99 at 1 conn {wasm1.p99_ms:.3f} ms (< 5 ms) {verdict}"
    else:
        latency = "wasmhost p99 at 1 conn: not measured"
    return f"targets: {throughput}; {latency}"


def ensure_guest() -> None:
    """Builds the guests once if needed; without cargo, stops with the one-line fix."""
    if not GUEST.exists() and shutil.which("cargo"):
        subprocess.run(["bash", str(ROOT / "rust-guests" / "build.sh")], cwd=ROOT, check=True)
    if not GUEST.exists():
        sys.exit(f"serve.py: {GUEST.relative_to(ROOT)} is missing; run `bash rust-guests/build.sh` (needs cargo)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, a smoke test")
    parser.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated subset of: " + ", ".join(f"{s.name} ({s.label})" for s in SCENARIOS),
    )
    parser.add_argument(
        "--client", choices=("wrk", "asyncio"), help="load generator (default: wrk when installed, else asyncio)"
    )
    args = parser.parse_args()
    wanted = set(args.scenarios.split(","))
    if unknown := wanted - {s.name for s in SCENARIOS}:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    seconds = 3.0 if args.quick else args.duration
    client = args.client or ("wrk" if shutil.which("wrk") else "asyncio")
    load: LoadFn = wrk if client == "wrk" else asyncio_client
    ensure_guest()

    print(f"{client}, {seconds:g} s per run after a {WARMUP_S} s warm-up, one server at a time", file=sys.stderr)
    if client == "asyncio":
        print("wrk not used: figures come from serve.py's own asyncio client (less precise)", file=sys.stderr)
    rows = [Row(s, name) for s in SCENARIOS if s.name in wanted for name in SERVERS]
    interrupted = False
    for row in rows:
        print(f"  {row.scenario.label}: {row.server} ...", file=sys.stderr, flush=True)
        try:
            measure(row, load, seconds)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            row.problems.append(f"failed: {exc}")
        except KeyboardInterrupt:  # the server is already stopped; show what was measured
            interrupted = True
            break
    print_table(rows)
    print(compare_replies(rows))
    print(targets(rows))
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
