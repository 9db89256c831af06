"""Idle guests: N socket-server guests in one process, their memory per instance and idle CPU.

Run: ``python benchmarks/idle.py [--guests 1000] [--idle 5]``. Starts N ``http-hello`` guests on
one uvloop loop (each listening on its own OS-picked 127.0.0.1 port), checks that a sample of
them answers, then measures for ``--idle`` seconds while nobody calls: the process's CPU time,
its thread count and its resident memory. The baseline beside it is N plain uvloop servers
(``asyncio.start_server``) in a fresh process, so the per-instance figure can be read against
what a bare listening socket costs in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "rust-guests" / "out" / "http-hello.wasm"


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def measure(idle: float) -> tuple[float, int]:
    """CPU seconds used and the thread count over ``idle`` seconds of doing nothing."""
    start = cpu_seconds()
    await asyncio.sleep(idle)
    return cpu_seconds() - start, threading.active_count()


async def guests(count: int, idle: float) -> dict[str, float]:
    from wasmhost import Host, Instance, Module, Network, PortMapping

    module = Module(GUEST)
    host = Host(stdout=None, network=Network(bind_address="127.0.0.1", ports=[PortMapping(0, 8080)]))
    before = rss_bytes()
    instances = [Instance(module, host) for _ in range(count)]
    tasks = [asyncio.create_task(inst.run_async()) for inst in instances]
    try:
        while sum(len(inst.listening) for inst in instances) < count:
            await asyncio.sleep(0.05)
        sample = [inst.listening[0][1] for inst in instances[:: max(1, count // 10)]]
        replies = await asyncio.gather(*(get(port) for port in sample))
        assert all(reply.endswith(b"Hello, World!") for reply in replies), replies[0]
        await asyncio.sleep(1)  # let the sample's connections settle
        cpu, threads = await measure(idle)
        return {"rss": rss_bytes() - before, "cpu": cpu, "threads": threads}
    finally:
        for inst in instances:
            inst.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for inst in instances:
            inst.close()


async def baseline(count: int, idle: float) -> dict[str, float]:
    before = rss_bytes()

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    servers = [await asyncio.start_server(answer, "127.0.0.1", 0) for _ in range(count)]
    try:
        await asyncio.sleep(1)
        cpu, threads = await measure(idle)
        return {"rss": rss_bytes() - before, "cpu": cpu, "threads": threads}
    finally:
        for server in servers:
            server.close()


def child(kind: str, count: int, idle: float) -> None:
    """Run one side in this (fresh) process and print its figures as JSON."""
    main = guests if kind == "wasmhost" else baseline
    print(json.dumps(uvloop.run(main(count, idle))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guests", type=int, default=1000, help="how many guests (default 1000)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds measured while idle (default 5)")
    parser.add_argument("--child", choices=("wasmhost", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.guests, args.idle)
        return
    if not GUEST.exists():
        sys.exit(f"idle.py: {GUEST.relative_to(ROOT)} is missing; run `bash rust-guests/build.sh`")
    print(f"{args.guests} idle servers in one process, {args.idle:g} s measured", file=sys.stderr)
    rows = {}
    for kind in ("wasmhost", "baseline"):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--guests", str(args.guests), "--idle", str(args.idle)],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        if done.returncode:
            sys.exit(f"idle.py: the {kind} run failed:\n{done.stderr[-2000:]}")
        rows[kind] = json.loads(done.stdout.strip().splitlines()[-1]) | {"wall": time.monotonic() - started}
    print(f"{'':<22} {'RSS/instance':>13} {'idle CPU':>10} {'threads':>8}")
    for kind, label in (("wasmhost", "wasmhost guests"), ("baseline", "uvloop start_server")):
        row = rows[kind]
        per = row["rss"] / args.guests / 1024
        print(f"{label:<22} {per:>10,.0f} KiB {100 * row['cpu'] / args.idle:>9.2f}% {row['threads']:>8.0f}")


if __name__ == "__main__":
    main()
