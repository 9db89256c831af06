"""Host-call speed: µs per call of a trivial import, on every path a WASI call can take.

Run: ``python benchmarks/hostcall.py [--calls N] [--slow-calls N] [--repeat R]``. A guest loop
calls an imported ``(i32, i32) -> i32`` function N times, R times per path; the fastest run counts,
as with ``timeit``, since other load only ever slows a run down. The baseline links it through wasmtime-py's
``Linker.define_func``; wasmhost links it into a fiber store (``_native.Store``) as

- a sync unchecked trampoline (what every non-blocking WASI call uses), with and without a
  guest-memory write;
- an ``async def`` that returns without waiting (the async path, no suspension);
- an ``async def`` that awaits a future resolved by ``loop.call_soon`` (a full suspend/resume
  round trip: what a blocking WASI call costs when it has to wait),

each driven by ``Store.call`` on uvloop and on asyncio's default loop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import uvloop
import wasmtime

from wasmhost import _native
from wasmhost.wasi.memory import GuestMemory

GUEST = """
(module
  (import "bench" "noop" (func $noop (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "loop") (param $n i32)
    (loop $again
      (drop (call $noop (i32.const 16) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again (local.get $n)))))
"""
SIG = _native.Signature("ii", "i")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


PATHS = {
    "sync": "sync unchecked trampoline",
    "sync+memory": "sync trampoline + memory write",
    "async-ready": "async, completes without waiting",
    "async-suspend": "async, suspend + call_soon resume",
}


def _host_function(path: str, memory: Callable[[], GuestMemory]) -> Callable[..., Any]:
    """The import for ``path``: sync, or an ``async def`` that waits or not."""

    def noop(_ptr: int, _n: int) -> int:
        return 0

    def touch(ptr: int, _n: int) -> int:
        memory().set_u32(ptr, 1)
        return 0

    async def ready(_ptr: int, _n: int) -> int:
        return 0

    async def suspend(_ptr: int, _n: int) -> int:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(done.set_result, None)
        await done
        return 0

    return {"sync": noop, "sync+memory": touch, "async-ready": ready, "async-suspend": suspend}[path]


def _wasmhost(path: str, calls: int, repeat: int, new_loop: Callable[[], asyncio.AbstractEventLoop]) -> float:
    """Best calls/s of ``repeat`` runs of ``path`` on a fresh fiber store driven by a loop from ``new_loop``."""
    store = _native.Store(None, None, lambda: None)
    module = _native.compile_module(_native.wat2wasm(GUEST), fuel=False)
    memories: list[GuestMemory] = []  # the memory exists only once the instance does
    instance = store.instantiate(module, {("bench", "noop"): (_host_function(path, lambda: memories[0]), SIG)})
    locate = store.memory_locator(instance)
    func = store.exported_func(instance, "loop")
    assert locate is not None and func is not None
    memories.append(GuestMemory(locate))

    async def run() -> float:
        start = time.perf_counter()
        await store.call(func, calls)
        return time.perf_counter() - start

    loop = new_loop()
    try:
        elapsed = min(loop.run_until_complete(run()) for _ in range(repeat))
    finally:
        loop.close()
        store.close()
    expected = calls * repeat if path == "async-suspend" else 0
    if store.suspensions != expected:
        raise SystemExit(f"hostcall.py: {PATHS[path]}: {store.suspensions} suspensions, expected {expected}")
    return calls / elapsed


def _default(calls: int, repeat: int) -> float:
    """Best calls/s of ``repeat`` runs through wasmtime-py's own ``Linker.define_func``."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    i32 = wasmtime.ValType.i32()
    linker.define_func("bench", "noop", wasmtime.FuncType([i32, i32], [i32]), lambda _p, _n: 0)
    instance = linker.instantiate(store, wasmtime.Module(engine, GUEST))
    func = instance.exports(store)["loop"]
    assert isinstance(func, wasmtime.Func)
    elapsed = []
    for _ in range(repeat):
        start = time.perf_counter()
        func(store, calls)
        elapsed.append(time.perf_counter() - start)
    return calls / min(elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="calls per run of a sync path (default 100000)")
    parser.add_argument(
        "--slow-calls", type=int, default=20_000, help="calls per run of the baseline and async paths (default 20000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per path, the fastest counts (default 3)")
    args = parser.parse_args()
    if min(args.calls, args.slow_calls, args.repeat) < 1:
        parser.error("--calls, --slow-calls and --repeat must be at least 1")
    base = _default(args.slow_calls, args.repeat)
    print(f"best of {args.repeat} runs per path")
    print(f"{'path':<36} {'loop':<8} {'calls':>8} {'us/call':>8} {'vs define_func':>15} {'x sync':>7}")
    print(f"{'wasmtime-py define_func (baseline)':<36} {'-':<8} {args.slow_calls:>8} {1e6 / base:>8.2f} {1.0:>14.2f}x")
    for loop_name, new_loop in LOOPS.items():
        sync = 0.0
        for path, label in PATHS.items():
            calls = args.slow_calls if path.startswith("async") else args.calls
            rate = _wasmhost(path, calls, args.repeat, new_loop)
            sync = sync or rate  # the first path is the sync trampoline: the unit of the last column
            print(
                f"{label:<36} {loop_name:<8} {calls:>8} {1e6 / rate:>8.2f} {rate / base:>14.2f}x {sync / rate:>6.2f}x"
            )
    print("vs define_func: speed relative to the baseline (higher is faster); x sync: time per call")
    print("relative to the sync unchecked trampoline on the same loop (higher is slower)")


if __name__ == "__main__":
    main()
