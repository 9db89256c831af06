"""Start-up: import times, compile cache cold vs warm, and process start to first HTTP response.

Run: ``python benchmarks/startup.py [--runs N]`` after ``rust-guests/build.sh``. "Cold" uses
an empty compile cache; "warm" runs again with the cache the cold run filled. Every figure is
the median of N runs, each in a fresh interpreter (``sys.executable``), measured in this run.
The targets (issue 7) are printed beside the figures they apply to. The start-up measures take
turns in each round, so load from other processes affects them alike; CPU time is shown beside
wall-clock time because on a loaded machine the two differ.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from procstat import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
GUESTS = ROOT / "rust-guests" / "out"
TARGET_IMPORT_MS = 100.0  # python -c 'import wasmhost'
TARGET_FIRST_RESPONSE_MS = 150.0  # python -m wasmhost serve MODULE, warm compile cache
_LISTENING = re.compile(rb"listening on (\S+):(\d+)")
# As after `pip install` (which byte-compiles): children may cache bytecode even where the
# environment disables it (PYTHONDONTWRITEBYTECODE), or every start would recompile wasmhost.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


Timing = tuple[float, float]  # seconds: (wall clock, CPU of the measured process)


def medians_ms(measures: dict[str, Callable[[], Timing]], runs: int) -> dict[str, Timing]:
    """Median (wall, CPU) ms of each measure; one round takes each in turn, so load shifts hit all alike."""
    samples: dict[str, list[Timing]] = {name: [] for name in measures}
    for _ in range(runs):
        for name, measure in measures.items():
            samples[name].append(measure())
    return {
        name: (statistics.median(s[0] for s in timings) * 1e3, statistics.median(s[1] for s in timings) * 1e3)
        for name, timings in samples.items()
    }


def process_time(code: str) -> Timing:
    """``python -c CODE``, interpreter start and exit included."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"python -c {code!r} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def import_breakdown(statement: str, runs: int, top: int) -> list[tuple[float, str]]:
    """The slowest top-level imports of ``statement`` (``-X importtime``, cumulative, median ms)."""
    samples: dict[str, list[int]] = {}
    for _ in range(runs):
        command = [sys.executable, "-X", "importtime", "-c", statement]
        err = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=ENV).stderr
        for line in err.splitlines():
            fields = line.split("|")
            # Depth 1: the modules `statement` itself imports, and their direct imports.
            if len(fields) == 3 and fields[1].strip().isdigit() and len(fields[2]) - len(fields[2].lstrip()) <= 3:
                samples.setdefault(fields[2].strip(), []).append(int(fields[1]))
    ranked = sorted(((statistics.median(us) / 1e3, name) for name, us in samples.items()), reverse=True)
    return ranked[:top]


def first_output(cache: str) -> float:
    """Seconds from process start to the first line of ``hello-world 1``."""
    env = {**ENV, "WASMHOST_CACHE_DIR": cache}
    start = time.perf_counter()
    command = [sys.executable, "-m", "wasmhost", "run", str(GUESTS / "hello-world.wasm"), "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=ROOT) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()
        elapsed = time.perf_counter() - start
        proc.wait()
    return elapsed


def first_response(module: Path, cache: str) -> Timing:
    """Seconds from starting ``python -m wasmhost serve MODULE`` to a complete HTTP response."""
    env = {**ENV, "WASMHOST_CACHE_DIR": cache}
    command = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", "-p", "0:8080", str(module)]
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT) as proc:
        assert proc.stderr is not None
        try:
            port = _port_of(proc)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                reply = b""
                while chunk := conn.recv(65536):
                    reply += chunk
            elapsed = time.perf_counter() - start, cpu_seconds(proc.pid)
            if not reply.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected reply {reply[:60]!r}")
        finally:
            proc.terminate()
            proc.wait(10)
    return elapsed


def _port_of(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stderr is not None
    for line in proc.stderr:
        found = _LISTENING.search(line)
        if found:
            return int(found.group(2))
    raise RuntimeError(f"serve exited with {proc.wait()} before listening")


def load(path: Path, cache_dir: Path) -> float:
    from wasmhost import Module
    from wasmhost.cache import CompileCache

    start = time.perf_counter()
    Module(path, cache=CompileCache(cache_dir))
    return time.perf_counter() - start


def _verdict(value: float, target: float) -> str:
    return "meets target" if value <= target else f"{value / target:.1f}x over target"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=12, help="import-time entries to list")
    options = parser.parse_args()
    runs, top = options.runs, options.top
    demo = ROOT / "wasmhost" / "_demo" / "http-hello.wasm"

    statements = ("pass", "import wasmhost", "import wasmhost.cli")
    serve = "serve http-hello.wasm: start to first response (warm cache)"
    with tempfile.TemporaryDirectory() as cache:
        first_response(demo, cache)  # fills the compile cache: every measured run is warm
        measures = {f"python -c {s!r}": functools.partial(process_time, s) for s in statements}
        figures = medians_ms({**measures, serve: functools.partial(first_response, demo, cache)}, runs)
    targets = {"python -c 'import wasmhost'": TARGET_IMPORT_MS, serve: TARGET_FIRST_RESPONSE_MS}
    print(f"start-up, median of {runs} runs ({sys.executable}, bytecode cached, load {os.getloadavg()[0]:.1f})")
    print(f"{'measure':<60} {'wall ms':>8} {'cpu ms':>7} {'target':>7}")
    for label, (wall, cpu) in figures.items():
        target = targets.get(label)
        verdict = f"{target:>7.0f}  {_verdict(wall, target)}" if target else ""
        print(f"{label:<60} {wall:>8.0f} {cpu:>7.0f} {verdict}")

    for stmt in statements[1:]:
        print(f"\nslowest imports of {stmt!r} (python -X importtime, cumulative, median ms)")
        for ms, name in import_breakdown(stmt, runs, top):
            print(f"  {ms:7.1f}  {name}")

    print(f"\n{'module':<18} {'bytes':>9} {'cold load ms':>13} {'warm load ms':>13} {'speed-up':>9}")
    for name in ("hello-world", "wasi-suite", "http-hello"):
        path = GUESTS / f"{name}.wasm"
        cold, warm = [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                cold.append(load(path, Path(tmp)))
                warm.append(load(path, Path(tmp)))
        c, w = statistics.median(cold) * 1e3, statistics.median(warm) * 1e3
        print(f"{name:<18} {path.stat().st_size:>9} {c:>13.1f} {w:>13.1f} {c / w:>8.1f}x")
    cold_first, warm_first = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            cold_first.append(first_output(tmp))
            warm_first.append(first_output(tmp))
    c, w = statistics.median(cold_first) * 1e3, statistics.median(warm_first) * 1e3
    print(f"\ntime to first guest output (python -m wasmhost run hello-world.wasm 1, median of {runs})")
    print(f"  cold cache: {c:.0f} ms\n  warm cache: {w:.0f} ms")


if __name__ == "__main__":
    main()
