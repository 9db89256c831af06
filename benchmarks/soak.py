"""Soak: does ``wasmhost serve`` leak over a long run?

Run: ``python benchmarks/soak.py [--quick] [--connections N] [--requests M] [--min-minutes T]
[--servers default,mio-0.8.7,component] [--component-reuse K] [--interval S] [--check]``. The
servers: the seed-style ``http-hello`` socket guest in each poll style (its own loop, and
``POLL_STYLE=mio-0.8.7``, tokio_wasi's pattern), and the componentize-py ``hello`` wasi:http
component (components/out/hello.wasm) with ``--reuse-instances K``. For each, a fresh
``wasmhost serve`` on an OS-picked 127.0.0.1 port gets N short connections (``Connection:
close``, 16 at a time, from an asyncio client of ours), then M keep-alive requests from ``wrk
-t1 -c10`` (a Lua script stops it after M answers; ``--max-time`` bounds it too); that load
repeats until ``--min-minutes`` have passed. Every ``--interval`` seconds the server's
descriptor count, thread count and RSS are read from ``/proc/PID``. The samples are printed,
then the slope of each under load after the warm-up (the first ``--warmup`` of the run) and the
verdicts against the targets: descriptors and threads back to where they were before the load,
RSS growth after the warm-up (the median of the last fifth of the samples against the first
fifth's) under 5 MB.

The defaults (100,000 connections and 1,000,000 requests per round, at least 5 minutes per
server) soak for at least fifteen minutes; ``--quick`` is 2,000 and 20,000, sampled every
second. The component is served with ``--reuse-instances 100`` by default: a fresh instance
per request serves about 170 requests/s here, so a million would take over an hour and a
half, while 100 still creates and drops 10,000 instances per million requests. ``--check``
exits 1 when fds or threads did not come back (and, without ``--quick``, when RSS grew past
the target). Loopback only; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
RSS_TARGET = 5 << 20
WRK_SCRIPT = """
local answered, limit = 0, tonumber(os.getenv("SOAK_REQUESTS"))
response = function(status, headers, body)
  answered = answered + 1
  if answered >= limit then wrk.thread:stop() end
end
"""


@dataclass(frozen=True)
class Target:
    """A server to soak: its module, its ``serve`` flags, the log line naming its port, and
    what builds the module."""

    title: str
    module: Path
    flags: tuple[str, ...]
    listening: re.Pattern[str]
    build: str
    component: bool = False  # served with --reuse-instances


_HELLO = ROOT / "rust-guests" / "out" / "http-hello.wasm"
_GUEST_LISTENING = re.compile(r"http-hello\.wasm: listening on 127\.0\.0\.1:(\d+)")
SERVERS = {
    "default": Target("http-hello, poll style default", _HELLO, ("-p", "0:8080"), _GUEST_LISTENING,
                      "rust-guests/build.sh"),
    "mio-0.8.7": Target("http-hello, poll style mio-0.8.7", _HELLO, ("-p", "0:8080", "--env", "POLL_STYLE=mio-0.8.7"),
                        _GUEST_LISTENING, "rust-guests/build.sh"),
    "component": Target("wasi:http component hello (componentize-py)", ROOT / "components" / "out" / "hello.wasm",
                        ("--port", "0"), re.compile(r"serving wasi:http on http://127\.0\.0\.1:(\d+)"),
                        "components/build.sh", component=True),
}  # fmt: skip


@dataclass(frozen=True)
class Sample:
    seconds: float
    fds: int
    threads: int
    rss: int


def read_sample(pid: int, start: float) -> Sample:
    """The server's descriptors, threads and resident memory now, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]
    return Sample(time.monotonic() - start, fds, threads, rss)


class Sampler(threading.Thread):
    """Samples the server every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.start_time = time.monotonic()
        self.samples: list[Sample] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.samples.append(read_sample(self.pid, self.start_time))

    def stop(self) -> None:
        self.done.set()
        self.join()


class Server:
    """``wasmhost serve`` of a target; stderr is drained on a thread (nobody blocks it)."""

    def __init__(self, target: Target, reuse: int) -> None:
        command = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", *target.flags]
        if target.component:
            command += ["--reuse-instances", str(reuse)]
        command.append(str(target.module))
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True, cwd=ROOT)  # fmt: skip
        self.log: list[str] = []
        self.port = 0
        found = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                if (match := target.listening.search(line)) and not found.is_set():
                    self.port = int(match.group(1))
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(120) or not self.port:  # a component's first start compiles it
            self.stop()
            raise SystemExit("soak: the server did not start:\n" + "".join(self.log))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def short_connections(port: int, count: int, parallel: int = 16) -> int:
    """``count`` connections, each one request with ``Connection: close``; returns the answered."""
    remaining = count
    answered = 0

    async def client() -> None:
        nonlocal remaining, answered
        while remaining > 0:
            remaining -= 1
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
                writer.write(REQUEST)
                response = await asyncio.wait_for(reader.read(), 10)
                writer.close()
                await writer.wait_closed()
            except (OSError, asyncio.TimeoutError):
                continue
            answered += response.endswith(b"Hello, World!")

    await asyncio.gather(*(client() for _ in range(parallel)))
    return answered


def keep_alive_requests(port: int, count: int, max_time: float, round_s: float) -> str:
    """``count`` keep-alive requests from wrk (10 connections, one thread), in rounds of
    ``round_s`` seconds (wrk runs for a duration; a Lua script stops the last round's
    thread at the count, and that round idles out its duration); wrk's totals."""
    if count <= 0:
        return "keep-alive: skipped (--requests 0)"
    wrk = shutil.which("wrk")
    if wrk is None:
        return "keep-alive: skipped (wrk is not installed)"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    done, errors, began = 0, 0, time.monotonic()
    try:
        while done < count and time.monotonic() - began < max_time:
            run = subprocess.run(
                [wrk, "-t1", "-c10", f"-d{round_s:g}s", "-s", script.name, f"http://127.0.0.1:{port}/"],
                capture_output=True, text=True, timeout=round_s + 30,
                env={**os.environ, "SOAK_REQUESTS": str(count - done)},
            )  # fmt: skip
            answered = re.search(r"(\d+) requests in", run.stdout)
            if answered is None:
                return f"keep-alive: wrk failed: {run.stdout}{run.stderr}"
            done += int(answered.group(1))
            errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", run.stdout))
            errors += sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", run.stdout))
    finally:
        os.unlink(script.name)
    return f"keep-alive: {done} requests in {time.monotonic() - began:.1f} s, {errors} errors"


def slope(samples: list[Sample], field: str) -> float:
    """Least-squares growth of ``field`` per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [s.seconds for s in samples]
    ys = [float(getattr(s, field)) for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def rss_growth(samples: list[Sample]) -> float:
    """The median RSS of the last fifth of ``samples`` less the first fifth's: a component's RSS
    moves with the instances alive at each sample, tens of MB either way, so two single samples
    would judge noise."""
    if not samples:
        return 0.0
    fifth = max(1, len(samples) // 5)
    return statistics.median(s.rss for s in samples[-fifth:]) - statistics.median(s.rss for s in samples[:fifth])


def settle(pid: int, start: float, baseline: Sample, seconds: float = 5.0) -> Sample:
    """The server once idle again: until fds and threads are back at the baseline, or ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        now = read_sample(pid, start)
        if (now.fds <= baseline.fds and now.threads <= baseline.threads) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def soak(target: Target, args: argparse.Namespace) -> bool:
    reuse = f", --reuse-instances {args.component_reuse}" if target.component else ""
    print(f"== {target.title}{reuse}: {args.connections} short connections, {args.requests} keep-alive"
          f" requests, a sample every {args.interval:g} s")  # fmt: skip
    server = Server(target, args.component_reuse)
    try:
        time.sleep(0.5)
        sampler = Sampler(server.proc.pid, args.interval)
        baseline = read_sample(server.proc.pid, sampler.start_time)
        sampler.samples.append(baseline)
        sampler.start()
        began, rounds = time.monotonic(), 0
        while rounds == 0 or time.monotonic() - began < args.min_minutes * 60:
            rounds += 1
            start = time.monotonic()
            answered = asyncio.run(short_connections(server.port, args.connections))
            print(f"round {rounds}: short: {answered}/{args.connections} answered in {time.monotonic() - start:.1f} s;"
                  f" {keep_alive_requests(server.port, args.requests, args.max_time, 3 if args.quick else 30)}",
                  flush=True)  # fmt: skip
        sampler.stop()
        end = settle(server.proc.pid, sampler.start_time, baseline)
    finally:
        server.stop()
    print(f"{'t (s)':>8} {'fds':>5} {'threads':>7} {'RSS (MB)':>9}")
    for s in [*sampler.samples, end]:
        print(f"{s.seconds:8.1f} {s.fds:5d} {s.threads:7d} {s.rss / 2**20:9.1f}")
    loaded = sampler.samples[1:]  # under load, without the idle baseline
    warm = [s for s in loaded if s.seconds >= loaded[-1].seconds * args.warmup] if loaded else []
    growth = rss_growth(warm)
    print(f"slope after warm-up (first {args.warmup:.0%} dropped), per minute: fds {slope(warm, 'fds'):+.2f},"
          f" threads {slope(warm, 'threads'):+.2f}, RSS {slope(warm, 'rss') / 2**20:+.2f} MB")  # fmt: skip
    fds_ok, threads_ok = end.fds <= baseline.fds, end.threads <= baseline.threads
    rss_ok = growth < RSS_TARGET
    print(f"fds: {'flat' if fds_ok else 'GREW'} ({baseline.fds} before the load, {end.fds} after)")
    print(f"threads: {'flat' if threads_ok else 'GREW'} ({baseline.threads} before, {end.threads} after)")
    print(f"RSS: {growth / 2**20:+.1f} MB after warm-up (medians of its first and last fifth; target"
          f" < {RSS_TARGET >> 20} MB): {'met' if rss_ok else 'MISSED'}")  # fmt: skip
    return fds_ok and threads_ok and (rss_ok or args.quick)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 connections, 20,000 requests, 1 s samples")
    parser.add_argument("--connections", type=int, help="short connections per round (default 100,000)")
    parser.add_argument("--requests", type=int, help="keep-alive requests per round (default 1,000,000)")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated: {','.join(SERVERS)}")
    parser.add_argument("--component-reuse", type=int, default=100, metavar="K",
                        help="the component's --reuse-instances (default 100)")  # fmt: skip
    parser.add_argument("--interval", type=float, help="seconds between samples (default 10; --quick 1)")
    parser.add_argument("--min-minutes", type=float, help="repeat the load for at least this long per server"
                        " (default 5, so three servers soak >= 15 minutes; --quick 0)")  # fmt: skip
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run before slopes count")
    parser.add_argument("--max-time", type=float, default=1800, help="most seconds wrk may run per round")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    args.connections = args.connections if args.connections is not None else 2_000 if args.quick else 100_000
    args.requests = args.requests if args.requests is not None else 20_000 if args.quick else 1_000_000
    args.interval = args.interval or (1.0 if args.quick else 10.0)
    args.min_minutes = args.min_minutes if args.min_minutes is not None else 0 if args.quick else 5
    names = [name for name in args.servers.split(",") if name]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        raise SystemExit(f"soak: --servers {','.join(unknown)}: expected some of {','.join(SERVERS)}")
    for target in (SERVERS[name] for name in names):
        if not target.module.exists():
            raise SystemExit(f"soak: {target.module} is missing: run {target.build}")
    results = [soak(SERVERS[name], args) for name in names]
    return 1 if args.check and not all(results) else 0


if __name__ == "__main__":
    sys.exit(main())
