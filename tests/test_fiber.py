"""One execution model: guests are fibers driven by the event loop, with no thread per guest.

Each state a guest can be in when it is stopped (suspended in a host call, computing,
in the middle of host calls) is tried, under uvloop and under asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import gc_paused, open_fds
from tests.test_instance import SLEEP, SPIN
from wasmhost import GuestTrap, Host, Instance, Interrupted, Limits, Module, Timeout
from wasmhost._native import Signature, Store, compile_module, wat2wasm
from wasmhost.net import loop as loops

_T = TypeVar("_T")

#: Calls fd_write to an empty iovec list forever: always in and out of host calls.
HOSTCALLS = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (drop (call $w (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 8))) (br $l))))
"""

#: Waits on poll_oneoff (a 10 s clock) forever.
PARKED = SLEEP.replace("300000000", "10000000000").replace(
    "(drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))",
    "(loop $l (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))) (br $l))",
)

#: A guest importing two host functions of the test's own: one that waits, one that recurses.
CALLER = """
(module
  (import "host" "wait" (func $wait (param i32) (result i32)))
  (import "host" "recurse" (func $recurse (param i32) (result i32)))
  (func (export "wait") (param i32) (result i32) (call $wait (local.get 0)))
  (func (export "recurse") (param i32) (result i32) (call $recurse (local.get 0))))
"""

LOOPS = {"uvloop": loops.new_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run_on(request: pytest.FixtureRequest) -> Callable[[Awaitable[_T]], _T]:
    """Run a coroutine to completion on the loop kind under test."""

    def run(main: Awaitable[_T]) -> _T:
        loop = LOOPS[request.param]()
        try:
            return loop.run_until_complete(main)
        finally:
            loop.close()

    return run


def _instance(wat: str, **limits: Any) -> Instance:
    return Instance(Module(wat.encode()), Host(stdout=None, limits=Limits(**limits)))


@pytest.mark.parametrize("wat", [PARKED, SPIN, HOSTCALLS], ids=["suspended", "computing", "in-host-calls"])
def test_stop_ends_a_guest_in_any_state_within_100_ms(run_on: Callable[..., Any], wat: str) -> None:
    async def main() -> float:
        with _instance(wat) as inst:
            task = asyncio.create_task(inst.run_async())
            await asyncio.sleep(0.2)
            assert not task.done()
            start = time.monotonic()
            inst.stop()
            with pytest.raises(Interrupted):
                await task
            return time.monotonic() - start

    assert run_on(main()) < 0.1


@pytest.mark.parametrize("wat", [PARKED, SPIN, HOSTCALLS], ids=["suspended", "computing", "in-host-calls"])
def test_timeout_ends_a_guest_in_any_state_within_100_ms_of_its_limit(run_on: Callable[..., Any], wat: str) -> None:
    async def main() -> float:
        with _instance(wat, timeout=0.3) as inst:
            start = time.monotonic()
            with pytest.raises(Timeout):
                await inst.run_async()
            return time.monotonic() - start

    assert 0.3 <= run_on(main()) < 0.4


def test_a_stop_from_another_thread_ends_a_suspended_guest(run_on: Callable[..., Any]) -> None:
    async def main() -> None:
        with _instance(PARKED) as inst:
            threading.Timer(0.2, inst.stop).start()
            with pytest.raises(Interrupted):
                await inst.run_async()

    run_on(main())


def test_a_spinning_guest_leaves_a_ticker_on_time(run_on: Callable[..., Any]) -> None:
    async def main() -> list[float]:
        lateness: list[float] = []

        async def ticker() -> None:
            while True:
                start = time.monotonic()
                await asyncio.sleep(0.01)
                lateness.append(time.monotonic() - start - 0.01)

        with _instance(SPIN, timeout=1.0) as inst, contextlib.suppress(Timeout):
            task = asyncio.create_task(ticker())
            await inst.run_async()
        task.cancel()
        return lateness

    # A guest that did not yield would make the ticker about 1 s late in every run. A shared
    # 2-core machine can also stall a process for 20-30 ms now and then (it did once in
    # .ci/matrix), so a run over the bound is measured once more before it counts.
    worst: list[float] = []
    while len(worst) < 2 and (not worst or worst[-1] > 0.025):
        with gc_paused():
            lateness = run_on(main())
        assert len(lateness) >= 30
        worst.append(max(lateness))
    assert worst[-1] <= 0.025, "worst lateness per run: " + ", ".join(f"{w * 1e3:.1f} ms" for w in worst)


def test_a_thousand_guests_share_one_loop_and_no_threads(run_on: Callable[..., Any]) -> None:
    """1,000 guests waiting at once on one loop; the thread count does not grow with them."""
    module = Module(SLEEP.replace("300000000", "200000000").encode())
    host = Host(stdout=None)

    async def main() -> tuple[int, int, float]:
        before = threading.active_count()
        instances = [Instance(module, host) for _ in range(1000)]
        try:
            start = time.monotonic()
            tasks = [asyncio.create_task(inst.run_async()) for inst in instances]
            await asyncio.sleep(0.1)
            during = threading.active_count()
            codes = await asyncio.gather(*tasks)
            assert codes == [0] * 1000
            return before, during, time.monotonic() - start
        finally:
            for inst in instances:
                inst.close()

    before, during, took = run_on(main())
    assert during <= max(before, 1) + 1  # at most the shared epoch clock
    assert took < 5  # 1,000 concurrent 200 ms sleeps, not one after another


def _store_with(funcs: dict[str, Callable[..., Any]], stop: Callable[[], str | None] = lambda: None) -> Any:
    store = Store(None, None, stop)
    module = compile_module(wat2wasm(CALLER), False)
    instance = store.instantiate(module, {("host", name): (func, Signature("i", "i")) for name, func in funcs.items()})
    return store, instance


def test_a_trap_raised_inside_a_suspended_host_call(run_on: Callable[..., Any]) -> None:
    class Boom(Exception):
        pass

    async def wait(n: int) -> int:
        await asyncio.sleep(0.01)
        raise Boom(n)

    store, instance = _store_with({"wait": wait, "recurse": lambda n: n})

    async def main() -> None:
        with pytest.raises(Exception, match="host function wait raised Boom"):
            await store.call(store.exported_func(instance, "wait"), 5)
        assert isinstance(store.take_pending(), Boom)

        async def fine(n: int) -> int:
            await asyncio.sleep(0)
            return n

        assert await store.call(store.exported_func(instance, "recurse"), 9) == 9  # the store stays usable

    run_on(main())
    store.close()


def test_an_async_host_function_gets_every_argument_whole(run_on: Callable[..., Any]) -> None:
    """Arguments are unpacked from Wasmtime's value slots: an i64 keeps its high half, an
    i32 arrives unsigned, and a function without parameters is called with none."""
    wat = """
    (module
      (import "host" "mix" (func $mix (param i64 i32 i32) (result i64)))
      (import "host" "none" (func $none (result i32)))
      (func (export "mix") (result i64) (call $mix (i64.const 0x123456789abcdef0) (i32.const -1) (i32.const 7)))
      (func (export "none") (result i32) (call $none)))
    """
    seen: list[tuple[int, ...]] = []

    async def mix(wide: int, minus_one: int, seven: int) -> int:
        seen.append((wide, minus_one, seven))
        await asyncio.sleep(0)  # through a suspension as well
        return wide + 1

    async def none() -> int:
        return 42

    store = Store(None, None, lambda: None)
    funcs = {("host", "mix"): (mix, Signature("Iii", "I")), ("host", "none"): (none, Signature("", "i"))}
    instance = store.instantiate(compile_module(wat2wasm(wat), False), funcs)
    try:
        assert run_on(store.call(store.exported_func(instance, "mix"))) == 0x123456789ABCDEF1
        assert seen == [(0x123456789ABCDEF0, 0xFFFF_FFFF, 7)]
        assert run_on(store.call(store.exported_func(instance, "none"))) == 42
    finally:
        store.close()


def test_python_recursion_3000_deep_in_a_host_callback(run_on: Callable[..., Any]) -> None:
    """Host functions run on the fiber's stack: it must hold deep Python recursion."""

    def depth(n: int) -> int:
        return 0 if n == 0 else 1 + depth(n - 1)

    store, instance = _store_with({"wait": lambda n: n, "recurse": depth})
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        assert run_on(store.call(store.exported_func(instance, "recurse"), 3000)) == 3000
    finally:
        sys.setrecursionlimit(limit)
        store.close()


def test_cancelling_a_suspended_call_closes_its_host_call(run_on: Callable[..., Any]) -> None:
    cleaned: list[int] = []

    async def wait(n: int) -> int:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(n)
        return n

    store, instance = _store_with({"wait": wait, "recurse": lambda n: n})

    async def main() -> None:
        task = asyncio.create_task(store.call(store.exported_func(instance, "wait"), 3))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == [3]
        assert await store.call(store.exported_func(instance, "recurse"), 4) == 4

    run_on(main())
    store.close()


# --- lifecycle ------------------------------------------------------------------------------


def test_leaving_the_with_block_while_run_async_runs_stops_then_releases(run_on: Callable[..., Any]) -> None:
    async def main() -> None:
        with _instance(PARKED) as inst:
            task = asyncio.create_task(inst.run_async())
            await asyncio.sleep(0.1)
        with pytest.raises(Interrupted):
            await task
        assert inst.state.value == "closed"

    run_on(main())


def _closed_from_here_while_running(inst: Instance, after: float) -> list[BaseException]:
    """Run ``inst`` on another thread, close it from this one ``after`` seconds later; what the
    running thread's ``run()`` raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            inst.run()
        except BaseException as exc:  # noqa: BLE001 - the caller checks it
            errors.append(exc)

    ran = threading.Thread(target=run)
    ran.start()
    time.sleep(after)
    inst.close()
    assert inst.state.value == "closed"
    ran.join(5)
    return errors


def test_close_from_another_thread_waits_for_the_guest() -> None:
    assert [type(e) for e in _closed_from_here_while_running(_instance(SPIN), 0.2)] == [Interrupted]


def test_close_racing_the_end_of_a_call_closes_the_private_loop_once() -> None:
    """close() from another thread may find the call just ended while its thread still holds the
    private loop: exactly one of them closes it (twice, asyncio's loop raised in 13 of 300 tries)."""
    rng = random.Random(7)
    for _ in range(100):
        errors = _closed_from_here_while_running(_instance(SPIN), rng.uniform(0.005, 0.03))
        assert [type(e) for e in errors] == [Interrupted]


def test_close_and_stop_are_idempotent_in_any_order() -> None:
    inst = _instance(SPIN)
    inst.stop()
    inst.close()
    inst.close()
    inst.stop()
    with pytest.raises(Exception, match="closed"):
        inst.run()


def test_a_second_call_while_one_runs_is_refused(run_on: Callable[..., Any]) -> None:
    async def main() -> None:
        with _instance(PARKED) as inst:
            task = asyncio.create_task(inst.run_async())
            await asyncio.sleep(0.05)
            with pytest.raises(Exception, match="running; one call at a time"):
                await inst.run_async()
            inst.stop()
            with pytest.raises(Interrupted):
                await task

    run_on(main())


def test_a_timeout_or_stop_does_not_outlive_its_call() -> None:
    slow = """
    (module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "nap") (param i64) (result i32)
        (i64.store (i32.const 0) (i64.const 1))
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (local.get 0))
        (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
    """
    with _instance(slow, timeout=0.2) as inst:
        with pytest.raises(Timeout):
            inst.call("nap", 1_000_000_000)
        assert inst.call("nap", 1_000_000) == 0  # 1 ms: well within the limit
        assert inst.call("nap", 1_000_000) == 0


def test_ctrl_c_during_run_is_a_keyboard_interrupt_not_a_host_failure() -> None:
    """SIGINT while ``run()`` waits in a host call surfaces as Python's KeyboardInterrupt."""
    with _instance(PARKED) as inst:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            inst.run()
        assert inst.state.value == "idle"


@pytest.mark.parametrize(("command", "code"), [("run", 130), ("serve", 0)])
def test_ctrl_c_on_the_cli_is_an_interruption(tmp_path: Path, command: str, code: int) -> None:
    wat = tmp_path / "parked.wat"
    wat.write_text(PARKED)
    proc = subprocess.Popen([sys.executable, "-m", "wasmhost", command, str(wat)], stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == code, err
    assert "host function failed" not in err and "Traceback" not in err


def test_a_failed_init_leaves_no_descriptors() -> None:
    before = open_fds()
    with pytest.raises(GuestTrap):
        Instance(Module(b"(module (func $s unreachable) (start $s))"), Host())
    assert not open_fds() - before
