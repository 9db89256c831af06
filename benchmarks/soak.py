"""Soak: does ``wasmhost serve`` of a socket guest leak over a long run?

Run: ``python benchmarks/soak.py [--quick] [--connections N] [--requests M] [--min-minutes T]
[--poll-styles default,mio-0.8.7] [--interval S] [--check]``. For each poll style of the
seed-style ``http-hello`` guest (its own loop, and ``POLL_STYLE=mio-0.8.7``, tokio_wasi's
pattern), a fresh ``wasmhost serve`` on an OS-picked 127.0.0.1 port gets N short connections
(``Connection: close``, 16 at a time, from an asyncio client of ours), then M keep-alive
requests from ``wrk -t1 -c10`` (a Lua script stops it after M answers; ``--max-time`` bounds
it too); that load repeats until ``--min-minutes`` have passed. Every ``--interval`` seconds
the server's descriptor count, thread count and RSS are read from ``/proc/PID``. The samples
are printed, then the slope of each under load after the warm-up (the first ``--warmup`` of
the run) and the verdicts against the targets: descriptors and threads back to where they
were before the load, RSS growth after the warm-up under 5 MB.

The defaults (100,000 connections and 1,000,000 requests per round, at least 5 minutes per
poll style) soak for at least ten minutes; ``--quick`` is 2,000 and 20,000, sampled every
second. ``--check`` exits 1 when fds or threads did not come back (and, without ``--quick``,
when RSS grew past the target). Loopback only; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "rust-guests" / "out" / "http-hello.wasm"
POLL_STYLES = {"default": [], "mio-0.8.7": ["--env", "POLL_STYLE=mio-0.8.7"]}
LISTENING = re.compile(r"http-hello\.wasm: listening on 127\.0\.0\.1:(\d+)")
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
    """``wasmhost serve`` of http-hello; stderr is drained on a thread (nobody blocks it)."""

    def __init__(self, style: list[str]) -> None:
        command = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", "-p", "0:8080", *style]
        self.proc = subprocess.Popen([*command, str(GUEST)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True, cwd=ROOT)  # fmt: skip
        self.log: list[str] = []
        self.port = 0
        found = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                if (match := LISTENING.search(line)) and not found.is_set():
                    self.port = int(match.group(1))
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(30) or not self.port:
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


def settle(pid: int, start: float, baseline: Sample, seconds: float = 5.0) -> Sample:
    """The server once idle again: until fds and threads are back at the baseline, or ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        now = read_sample(pid, start)
        if (now.fds <= baseline.fds and now.threads <= baseline.threads) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def soak(name: str, style: list[str], args: argparse.Namespace) -> bool:
    print(f"== http-hello, poll style {name}: {args.connections} short connections, {args.requests} keep-alive"
          f" requests, a sample every {args.interval:g} s")  # fmt: skip
    server = Server(style)
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
    growth = warm[-1].rss - warm[0].rss if warm else 0
    print(f"slope after warm-up (first {args.warmup:.0%} dropped), per minute: fds {slope(warm, 'fds'):+.2f},"
          f" threads {slope(warm, 'threads'):+.2f}, RSS {slope(warm, 'rss') / 2**20:+.2f} MB")  # fmt: skip
    fds_ok, threads_ok = end.fds <= baseline.fds, end.threads <= baseline.threads
    rss_ok = growth < RSS_TARGET
    print(f"fds: {'flat' if fds_ok else 'GREW'} ({baseline.fds} before the load, {end.fds} after)")
    print(f"threads: {'flat' if threads_ok else 'GREW'} ({baseline.threads} before, {end.threads} after)")
    print(f"RSS: {growth / 2**20:+.1f} MB after warm-up (target < {RSS_TARGET >> 20} MB): "
          f"{'met' if rss_ok else 'MISSED'}")  # fmt: skip
    return fds_ok and threads_ok and (rss_ok or args.quick)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 connections, 20,000 requests, 1 s samples")
    parser.add_argument("--connections", type=int, help="short connections per poll style (default 100,000)")
    parser.add_argument("--requests", type=int, help="keep-alive requests per poll style (default 1,000,000)")
    parser.add_argument("--poll-styles", default=",".join(POLL_STYLES), help="comma-separated: default,mio-0.8.7")
    parser.add_argument("--interval", type=float, help="seconds between samples (default 10; --quick 1)")
    parser.add_argument("--min-minutes", type=float, help="repeat the load for at least this long per poll style"
                        " (default 5, so two styles soak >= 10 minutes; --quick 0)")  # fmt: skip
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run before slopes count")
    parser.add_argument("--max-time", type=float, default=1800, help="most seconds wrk may run per poll style")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    args.connections = args.connections if args.connections is not None else 2_000 if args.quick else 100_000
    args.requests = args.requests if args.requests is not None else 20_000 if args.quick else 1_000_000
    args.interval = args.interval or (1.0 if args.quick else 10.0)
    args.min_minutes = args.min_minutes if args.min_minutes is not None else 0 if args.quick else 5
    if not GUEST.exists():
        raise SystemExit(f"soak: {GUEST} is missing: run rust-guests/build.sh")
    styles = [s for s in args.poll_styles.split(",") if s]
    unknown = [s for s in styles if s not in POLL_STYLES]
    if unknown:
        raise SystemExit(f"soak: --poll-styles {','.join(unknown)}: expected some of {','.join(POLL_STYLES)}")
    results = [soak(name, POLL_STYLES[name], args) for name in styles]
    return 1 if args.check and not all(results) else 0


if __name__ == "__main__":
    sys.exit(main())
