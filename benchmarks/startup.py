"""Cold vs warm start: compile time, and time to the guest's first output line.

Run: ``python benchmarks/startup.py [--runs N]`` after ``rust-guests/build.sh``. "Cold" uses
an empty compile cache; "warm" runs again with the cache the cold run filled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wasmhost import Module
from wasmhost.cache import CompileCache

ROOT = Path(__file__).resolve().parent.parent
GUESTS = ROOT / "rust-guests" / "out"


def first_output(cache: str) -> float:
    """Seconds from process start to the first line of ``hello-world 1``."""
    env = {**os.environ, "WASMHOST_CACHE_DIR": cache}
    start = time.perf_counter()
    command = [sys.executable, "-m", "wasmhost", "run", str(GUESTS / "hello-world.wasm"), "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()
        elapsed = time.perf_counter() - start
        proc.wait()
    return elapsed


def load(path: Path, cache: CompileCache) -> float:
    start = time.perf_counter()
    Module(path, cache=cache)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(f"{'module':<18} {'bytes':>9} {'cold load ms':>13} {'warm load ms':>13} {'speed-up':>9}")
    for name in ("hello-world", "wasi-suite", "http-hello"):
        path = GUESTS / f"{name}.wasm"
        cold, warm = [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                cache = CompileCache(Path(tmp))
                cold.append(load(path, cache))
                warm.append(load(path, cache))
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
