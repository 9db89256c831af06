"""Host-call speed: calls/s of a trivial import, wasmhost's trampoline beside wasmtime-py's default.

Run: ``python benchmarks/hostcall.py [--calls N]``. A guest loop calls an imported
``(i32, i32) -> i32`` function N times; the same guest is linked once through wasmhost's
unchecked trampoline (what every WASI call uses) and once through ``Linker.define_func``.
"""

from __future__ import annotations

import argparse
import time

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


def _wasmhost(calls: int, touch_memory: bool) -> float:
    store = _native.Store(None, None, lambda: None)
    module = _native.compile_module(_native.wat2wasm(GUEST), fuel=False)
    memory = GuestMemory(lambda: (0, 0))

    def noop(ptr: int, _n: int) -> int:
        if touch_memory:
            memory.set_u32(ptr, 1)
        return 0

    sig = _native.Signature("ii", "i")
    instance = store.instantiate(module, _native.HostCalls(), {("bench", "noop"): (noop, sig)})
    locate = store.memory_locator(instance)
    assert locate is not None
    memory = GuestMemory(locate)
    func = store.exported_func(instance, "loop")
    start = time.perf_counter()
    store.call(func, calls)
    return calls / (time.perf_counter() - start)


def _default(calls: int) -> float:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    i32 = wasmtime.ValType.i32()
    linker.define_func("bench", "noop", wasmtime.FuncType([i32, i32], [i32]), lambda _p, _n: 0)
    instance = linker.instantiate(store, wasmtime.Module(engine, GUEST))
    func = instance.exports(store)["loop"]
    start = time.perf_counter()
    func(store, calls)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    rows = [
        ("wasmtime-py define_func (baseline)", _default(calls)),
        ("wasmhost unchecked trampoline", _wasmhost(calls, touch_memory=False)),
        ("wasmhost trampoline + memory write", _wasmhost(calls, touch_memory=True)),
    ]
    base = rows[0][1]
    print(f"{'path':<38} {'calls/s':>12} {'us/call':>9} {'vs baseline':>12}")
    for name, rate in rows:
        print(f"{name:<38} {rate:>12,.0f} {1e6 / rate:>9.2f} {rate / base:>11.1f}x")


if __name__ == "__main__":
    main()
