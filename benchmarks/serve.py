"""HTTP requests/s and latency: the http-hello guest under wasmhost beside two plain uvloop servers.

Run: ``python benchmarks/serve.py [--duration S | --quick] [--scenarios 1,50,close1,close]
[--workers 1,2] [--rounds N]``. Per scenario, each server starts fresh on an OS-picked 127.0.0.1 port, is warmed
up for 1 s, loaded with ``wrk -t1`` and stopped; one server at a time, so a 2-core machine measures
the server and not the contention. The servers: the guest under wasmhost twice (its default poll
loop, and ``POLL_STYLE=mio-0.8.7``, which polls the way tokio_wasi on mio_wasi 0.8.7 does; again
for each worker count above 1), then uvloop + h11 and uvloop + httptools, which answer with the
guest's exact bytes. A fresh wasmhost per scenario makes its ``--host-call-stats`` (host calls and
suspensions) a per-scenario count. With ``--rounds N`` the whole sequence runs N times; each row
shows its median run and each ratio is the median of the N ratios of runs made in the same round,
which a noisy machine shifts far less than a single run. Without wrk, a small asyncio client of ours applies the same
scenarios; its figures are less precise.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import uvloop
from procstat import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "rust-guests" / "out" / "http-hello.wasm"
BASELINES = ROOT / "benchmarks" / "baselines"
_SERVE = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", "-p", "0:8080", "--host-call-stats"]
# The guest's poll styles: its own loop, and tokio_wasi's on mio_wasi 0.8.7 (see wasmedge-net's server.rs).
POLL_STYLES = {"wasmhost": [], "wasmhost-mio": ["--env", "POLL_STYLE=mio-0.8.7"]}
BASELINE_SERVERS = {
    "h11": [sys.executable, str(BASELINES / "h11_server.py"), "--port", "0"],
    "httptools": [sys.executable, str(BASELINES / "httptools_server.py"), "--port", "0"],
}
WARMUP_S = 1
# One keep-alive request, then one that asks to close: the exchange compared across servers.
PROBE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
PROBE_REQUESTS = 2
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
BASELINE_NAMES = tuple(BASELINE_SERVERS)


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    connections: int
    close: bool


SCENARIOS = (
    Scenario("1", "1 conn keep-alive", 1, close=False),
    Scenario("50", "50 conn keep-alive", 50, close=False),
    Scenario("close1", "1 conn close", 1, close=True),
    Scenario("close", "50 conn close", 50, close=True),
)


@dataclass(frozen=True)
class Target:
    """A goal for each wasmhost server in one scenario: its req/s over ``baseline``'s in the same
    run at least ``limit``, or (no baseline) its p99 latency under ``limit`` ms."""

    source: str
    scenario: str
    baseline: str | None
    limit: float

    @property
    def goal(self) -> str:
        return f"wasmhost/{self.baseline} >= {self.limit:.1f}x" if self.baseline else f"p99 < {self.limit:g} ms"

    def judge(self, rows: list[Row], server: str) -> str:
        """``server``'s figure and PASS/MISS, or "not measured"."""
        row = _find(rows, self.scenario, server)
        if self.baseline:
            ratio = _ratio(row, _find(rows, self.scenario, self.baseline)) if row else None
            return "not measured" if ratio is None else f"{ratio:.2f}x {_verdict(ratio >= self.limit)}"
        p99 = row.load.p99_ms if row and row.load else None
        return "not measured" if p99 is None else f"{p99:.3f} ms {_verdict(p99 < self.limit)}"


TARGETS = (
    Target("issue 8", "1", "httptools", 0.6),
    Target("issue 8", "50", "httptools", 0.5),
    Target("issue 8", "close", "httptools", 0.8),
    Target("issue 8", "close1", "httptools", 0.8),
    Target("issue 7", "close1", "h11", 1.0),
    Target("issue 7", "close", "h11", 1.0),
    Target("earlier", "50", "h11", 1.0),
    Target("earlier", "1", None, 5.0),
)


@dataclass(frozen=True)
class Load:
    """What one load run measured; ``problems`` holds anything the client flagged."""

    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    problems: tuple[str, ...] = ()
    #: The server's CPU time (user + system, all its processes) per request in microseconds:
    #: steadier than req/s on a shared machine, since other work does not inflate it.
    cpu_us: float | None = None


@dataclass
class Row:
    """One server in one scenario, filled in by ``measure``."""

    scenario: Scenario
    server: str
    command: list[str]
    workers: int = 1
    #: One load per round, in round order (a failed round leaves a gap: None).
    loads: list[Load | None] = field(default_factory=list)
    reply: bytes | None = None
    calls_per_request: float | None = None
    suspensions_per_request: float | None = None
    host_calls: str | None = None
    problems: list[str] = field(default_factory=list)
    #: Host calls, suspensions and requests summed over the rounds.
    _calls: Counter[str] = field(default_factory=Counter)
    _suspensions: int = 0
    _requests: int = 0

    @property
    def is_wasmhost(self) -> bool:
        return self.server not in BASELINE_NAMES

    @property
    def load(self) -> Load | None:
        """The run with the median req/s."""
        done = sorted((load for load in self.loads if load is not None), key=lambda load: load.rps)
        return done[(len(done) - 1) // 2] if done else None

    @property
    def cpu_us(self) -> float | None:
        """The median over the rounds of the server's CPU time per request."""
        spent = [load.cpu_us for load in self.loads if load is not None and load.cpu_us is not None]
        return statistics.median(spent) if spent else None


LoadFn = Callable[[int, Scenario, float], Load]


class Server:
    """One server process on an OS-picked port; terminated and reaped on exit, whatever happened."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        self.command = command
        self.port = 0
        self.returncode: int | None = None
        self.log = ""
        self._stderr: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        # stderr goes to a file so a chatty server can never block on a full pipe. The server
        # shares the file's offset with our reads: in append mode its writes still go to the end
        # (otherwise a write landing after our seek(0) overwrote the listening line's start).
        self._stderr = tempfile.TemporaryFile()
        fcntl.fcntl(self._stderr, fcntl.F_SETFL, fcntl.fcntl(self._stderr, fcntl.F_GETFL) | os.O_APPEND)
        try:
            self._proc = subprocess.Popen(
                self.command,
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

    def cpu_seconds(self) -> float:
        """User and system CPU time so far of the server and every process under it (workers)."""
        assert self._proc is not None
        return cpu_seconds(self._proc.pid)

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


def servers(workers: list[int]) -> list[tuple[str, list[str], int]]:
    """(name, command, worker processes) of every server: wasmhost per worker count and poll style,
    then the baselines."""
    found = []
    for count in workers:
        for style, options in POLL_STYLES.items():
            name, spread = (style, []) if count == 1 else (f"{style}-w{count}", ["--workers", str(count)])
            found.append((name, [*_SERVE, *options, *spread, str(GUEST)], count))
    return [*found, *((name, command, 1) for name, command in BASELINE_SERVERS.items())]


# Not anchored to lines: workers write their stats at once into one stderr, so lines can run together.
_HOST_CALLS = re.compile(r"host-calls (\S+) (\d+)")
_SUSPENSIONS = re.compile(r"host-suspensions (\d+)")


def host_calls(log: str) -> Counter[str]:
    """The ``host-calls NAME N`` lines wasmhost prints at exit with ``--host-call-stats``, summed over workers."""
    calls: Counter[str] = Counter()
    for found in _HOST_CALLS.finditer(log):
        calls[found[1]] += int(found[2])
    return calls


def host_suspensions(log: str) -> list[int]:
    """The ``host-suspensions N`` lines, one per worker: how often a host call suspended the guest."""
    return [int(found[1]) for found in _SUSPENSIONS.finditer(log)]


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
    with Server(row.server, row.command) as server:
        row.reply = probe(server.port)
        warmup = load(server.port, row.scenario, WARMUP_S)
        before = server.cpu_seconds()
        measured = load(server.port, row.scenario, seconds)
        spent = server.cpu_seconds() - before
        if measured.requests:
            measured = replace(measured, cpu_us=spent / measured.requests * 1e6)
        row.loads.append(measured)
    row.problems += [p for p in measured.problems if p not in row.problems]
    if server.returncode != 0:
        row.problems.append(f"exit status {server.returncode}")
    if row.is_wasmhost:
        suspensions = host_suspensions(server.log)
        if len(suspensions) != row.workers:
            row.problems.append(f"host-call stats from {len(suspensions)} of {row.workers} wasmhost process(es)")
            return
        row._calls += host_calls(server.log)
        row._suspensions += sum(suspensions)
        row._requests += PROBE_REQUESTS + warmup.requests + measured.requests
        requests = row._requests
        row.calls_per_request = row._calls["total"] / requests
        row.suspensions_per_request = row._suspensions / requests
        row.host_calls = "per request: " + ", ".join(
            f"{name} {n / requests:.2f}"
            for name, n in row._calls.most_common()
            if name != "total" and n / requests >= 0.005
        )


def _ratio(row: Row, baseline: Row | None) -> float | None:
    """The median over the rounds of ``row``'s req/s over ``baseline``'s in the same round."""
    if baseline is None:
        return None
    pairs = zip(row.loads, baseline.loads, strict=False)  # an interrupted run may end mid-round
    ratios = [a.rps / b.rps for a, b in pairs if a is not None and b is not None and b.rps]
    return statistics.median(ratios) if ratios else None


def _find(rows: list[Row], scenario: str, server: str) -> Row | None:
    return next((row for row in rows if row.scenario.name == scenario and row.server == server), None)


TABLE = "{:<19} {:<15} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>10} {:>9} {:>8}"


def print_table(rows: list[Row]) -> None:
    print(TABLE.format("scenario", "server", "requests", "req/s", "p50 ms", "p99 ms", "cpu us", "/h11", "/httptools",
                       "calls/req", "susp/req"))  # fmt: skip
    shown: set[str] = set()
    for row in rows:
        label = "" if row.scenario.name in shown else row.scenario.label
        shown.add(row.scenario.name)
        if row.load is None:
            print(f"{label:<19} {row.server:<15} {'failed' if row.problems else 'not run':>8}")
        else:
            ratios = (
                [_x(_ratio(row, _find(rows, row.scenario.name, base))) for base in BASELINE_NAMES]
                if row.is_wasmhost
                else ["", ""]
            )
            per_request = [_f(row.calls_per_request), _f(row.suspensions_per_request)] if row.is_wasmhost else ["", ""]
            line = TABLE.format(label, row.server, row.load.requests, f"{row.load.rps:,.0f}", _ms(row.load.p50_ms),
                                _ms(row.load.p99_ms), _cpu(row.cpu_us), *ratios, *per_request)  # fmt: skip
            print(line.rstrip())
        for note in [*([row.host_calls] if row.host_calls else []), *(f"! {p}" for p in row.problems)]:
            print(f"{'':<19} {note}")


def compare_replies(rows: list[Row]) -> str:
    """Whether each other server sent the very bytes wasmhost's default guest sent for ``PROBE``."""
    reference = next((row.reply for row in rows if row.server == "wasmhost" and row.reply), None)
    if reference is None:
        return "reply bytes: not compared (no wasmhost reply)"
    verdicts: dict[str, str] = {}
    for row in rows:
        if row.server != "wasmhost" and row.reply is not None and verdicts.get(row.server, "identical") == "identical":
            verdicts[row.server] = "identical" if row.reply == reference else f"DIFFERENT: {row.reply!r}"
    return "reply bytes vs wasmhost: " + ", ".join(f"{name} {verdict}" for name, verdict in verdicts.items())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(rows: list[Row]) -> list[str]:
    """The goals, one line each with every single-process wasmhost server's figure, as PASS/MISS
    (never an assertion); rows with more workers are in the table only."""
    guests = list(dict.fromkeys(row.server for row in rows if row.is_wasmhost and row.workers == 1))
    labels = {s.name: s.label for s in SCENARIOS}
    lines = ["targets (single-process wasmhost servers; ratios of req/s in this run):"]
    run = {row.scenario.name for row in rows}
    for target in (t for t in TARGETS if t.scenario in run):
        verdicts = "; ".join(f"{guest} {target.judge(rows, guest)}" for guest in guests)
        lines.append(f"  {target.source:<8} {labels[target.scenario]:<19} {target.goal:<26} {verdicts}")
    return lines


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
        "--rounds", type=int, default=1, help="run everything N times; medians of runs and of same-round ratios"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated subset of: " + ", ".join(f"{s.name} ({s.label})" for s in SCENARIOS),
    )
    parser.add_argument(
        "--client", choices=("wrk", "asyncio"), help="load generator (default: wrk when installed, else asyncio)"
    )
    parser.add_argument(
        "--workers",
        default="1",
        help="comma-separated worker counts for wasmhost (serve --workers N); one row each per poll style (default 1)",
    )
    args = parser.parse_args()
    wanted = set(args.scenarios.split(","))
    if unknown := wanted - {s.name for s in SCENARIOS}:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    counts = args.workers.split(",")
    if not all(count.isdigit() and int(count) > 0 for count in counts):
        parser.error(f"--workers {args.workers}: expected positive numbers separated by commas")
    seconds = 3.0 if args.quick else args.duration
    client = args.client or ("wrk" if shutil.which("wrk") else "asyncio")
    load: LoadFn = wrk if client == "wrk" else asyncio_client
    ensure_guest()

    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected a positive number")
    print(f"{client}, {seconds:g} s per run after a {WARMUP_S} s warm-up, one server at a time, {args.rounds} "
          "round(s)", file=sys.stderr)  # fmt: skip
    if client == "asyncio":
        print("wrk not used: figures come from serve.py's own asyncio client (less precise)", file=sys.stderr)
    rows = [
        Row(s, name, command, workers)
        for s in SCENARIOS
        if s.name in wanted
        for name, command, workers in servers(list(dict.fromkeys(int(count) for count in counts)))
    ]
    interrupted = False
    for round_ in range(1, args.rounds + 1):
        for row in rows:
            print(f"  round {round_}: {row.scenario.label}: {row.server} ...", file=sys.stderr, flush=True)
            try:
                measure(row, load, seconds)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                if len(row.loads) < round_:
                    row.loads.append(None)
                row.problems.append(f"round {round_} failed: {exc}")
            except KeyboardInterrupt:  # the server is already stopped; show what was measured
                interrupted = True
                break
        if interrupted:
            break
    print_table(rows)
    print(compare_replies(rows))
    print("\n".join(targets(rows)))
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
