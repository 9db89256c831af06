"""Instance lifecycle on small text-format guests: exit codes, traps, stop, limits, async."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import open_fds
from wasmhost import GuestTrap, Host, Instance, Interrupted, Limits, LinkError, Module, Preopen, Timeout

WRITE_AND_EXIT = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "out\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
    (call $exit (i32.const 7))))
"""

SPIN = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'

GROW = """
(module
  (memory (export "memory") 1)
  (func (export "_start") (result i32) (memory.grow (i32.const 100))))
"""

REACTOR = """
(module
  (global $base (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $base (i32.const 40)))
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (global.get $base) (i32.add (local.get 0) (local.get 1)))))
"""

SLEEP = """
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; one relative MONOTONIC clock subscription of 300 ms at offset 0
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 300000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"""


def test_exit_code_and_stdout_callback() -> None:
    out: list[bytes] = []
    with Instance(Module(WRITE_AND_EXIT.encode()), Host(stdout=out.append)) as inst:
        assert inst.run() == 7
    assert out == [b"out\n"]


def test_a_sync_call_leaves_no_uvloop_behind() -> None:
    """``call()`` and ``run()`` drive the guest on asyncio's own loop. A closed uvloop loop (libuv
    tears down an io_uring ring) let the kernel cut this process's next 2 MB print to a pipe short
    in about 1 run of 100, and with PYTHONUNBUFFERED the text stream dropped the rest silently."""
    code = (
        "import sys\nfrom wasmhost import Host, Instance, Module\n"
        "with Instance(Module(b'(module (func (export \"f\") (result i32) i32.const 7))'), Host()) as inst:\n"
        "    assert inst.call('f') == 7\n"
        "print('uvloop' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "False\n"


def test_trap_reports_kind_and_backtrace() -> None:
    wat = '(module (func $boom unreachable) (func (export "_start") (call $boom)))'
    with Instance(Module(wat.encode())) as inst, pytest.raises(GuestTrap) as info:
        inst.run()
    assert info.value.kind == "unreachable"
    assert any("boom" in frame for frame in info.value.frames)


def test_unknown_imports_listed_together() -> None:
    wat = """(module
      (import "env" "missing_one" (func))
      (import "wasi_snapshot_preview1" "not_a_wasi_function" (func))
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32))))"""
    with pytest.raises(LinkError) as info:
        Instance(Module(wat.encode()))
    assert info.value.missing == [
        "env::missing_one",
        "wasi_snapshot_preview1::not_a_wasi_function",
        "wasi_snapshot_preview1::fd_write",
    ]


def test_stop_from_another_thread_ends_a_spinning_guest() -> None:
    with Instance(Module(SPIN.encode())) as inst:
        threading.Timer(0.2, inst.stop).start()
        start = time.monotonic()
        with pytest.raises(Interrupted):
            inst.run()
        assert time.monotonic() - start < 1.0


def test_stop_interrupts_a_blocking_host_call() -> None:
    with Instance(Module(SLEEP.replace("300000000", "60000000000").encode())) as inst:
        threading.Timer(0.2, inst.stop).start()
        start = time.monotonic()
        with pytest.raises(Interrupted):
            inst.run()
        assert time.monotonic() - start < 1.0


def test_timeout_limit() -> None:
    with Instance(Module(SPIN.encode()), Host(limits=Limits(timeout=0.3))) as inst:
        start = time.monotonic()
        with pytest.raises(Timeout, match=r"0\.3 s time limit"):
            inst.run()
        assert 0.3 <= time.monotonic() - start < 0.8


def test_fuel_limit_traps() -> None:
    with Instance(Module(SPIN.encode()), Host(limits=Limits(fuel=10_000))) as inst, pytest.raises(GuestTrap) as info:
        inst.run()
    assert info.value.kind == "out of fuel"


def test_memory_limit_makes_grow_fail() -> None:
    module = Module(GROW.encode())
    with Instance(module, Host(limits=Limits(memory=2 * 65536))) as inst:
        assert inst.call("_start") == -1
    with Instance(module) as inst:
        assert inst.call("_start") == 1  # previous size in pages


def test_reactor_call_runs_initialize_first() -> None:
    with Instance(Module(REACTOR.encode())) as inst:
        assert inst.call("add", 1, 2) == 43


def test_close_releases_preopened_dirs(tmp_path: Path) -> None:
    host = Host(preopens=[Preopen("/data", tmp_path)], stdout=None)
    module = Module(WRITE_AND_EXIT.encode())
    Instance(module, host).close()  # wasmtime keeps one memory image per module: not ours
    before = open_fds()
    inst = Instance(module, host)
    assert len(open_fds() - before) >= 1
    inst.close()
    assert not open_fds() - before


CAT = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 5))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (if (i32.load (i32.const 16))
        (then
          (i32.store (i32.const 4) (i32.load (i32.const 16)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
          (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 20)))
          (br $more))))))
"""


def test_stdio_from_bytes_to_file_and_callable(tmp_path: Path) -> None:
    """stdin from bytes; stdout to a file; stderr to a callable (the guest copies in 5-byte reads)."""
    errors: list[bytes] = []
    host = Host(stdin=b"hello, stdio!", stdout=tmp_path / "out.txt", stderr=errors.append)
    with Instance(Module(CAT.encode()), host) as inst:
        assert inst.run() == 0
    assert (tmp_path / "out.txt").read_bytes() == b"hello, stdio!"
    assert b"".join(errors) == b"hello, stdio!" and len(errors) == 3


def test_stdin_from_a_file_and_nowhere(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"from a file")
    out: list[bytes] = []
    with Instance(Module(CAT.encode()), Host(stdin=tmp_path / "in.txt", stdout=out.append, stderr=None)) as inst:
        assert inst.run() == 0
    assert b"".join(out) == b"from a file"
    out.clear()
    with Instance(Module(CAT.encode()), Host(stdin=None, stdout=out.append)) as inst:
        assert inst.run() == 0
    assert out == []


def test_bad_stdio_settings_are_config_errors(tmp_path: Path) -> None:
    from wasmhost import ConfigError

    with pytest.raises(ConfigError, match="bytes can only be given as stdin"):
        Instance(Module(CAT.encode()), Host(stdout=b"x"))
    with pytest.raises(ConfigError, match="cannot open for stdin"):
        Instance(Module(CAT.encode()), Host(stdin=tmp_path / "missing"))


TLS_PLUGIN = """
(module
  (import "rustls_client" "new_codec" (func $codec (param i32 i32) (result i32)))
  (func (export "_start"))
  (func (export "connect") (result i32) (call $codec (i32.const 0) (i32.const 0))))
"""


def test_unknown_imports_can_be_stubbed_to_trap_when_called() -> None:
    module = Module(TLS_PLUGIN.encode())
    with pytest.raises(LinkError, match="rustls_client::new_codec"):
        Instance(module)
    with Instance(module, Host(trap_unknown_imports=True)) as inst:
        assert inst.run() == 0
    with Instance(module, Host(trap_unknown_imports=True)) as inst, pytest.raises(GuestTrap) as info:
        inst.call("connect")
    assert info.value.kind == "unknown import called"
    assert "rustls_client::new_codec" in info.value.message


def test_cancelling_run_async_stops_the_guest() -> None:
    async def main() -> None:
        with Instance(Module(SPIN.encode())) as inst:
            task = asyncio.create_task(inst.run_async())
            await asyncio.sleep(0.2)
            task.cancel()
            start = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - start < 1.0

    asyncio.run(main())


def test_stop_interrupts_a_guest_blocked_reading_a_pipe(tmp_path: Path) -> None:
    """stdin from a FIFO that has a writer but no data: the read waits interruptibly."""
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # keeps the FIFO open without ever writing
    try:
        with Instance(Module(CAT.encode()), Host(stdin=fifo, stdout=None)) as inst:
            threading.Timer(0.2, inst.stop).start()
            start = time.monotonic()
            with pytest.raises(Interrupted):
                inst.run()
            assert time.monotonic() - start < 1.0
    finally:
        os.close(writer)


def test_cli_run_stops_on_sigterm_while_reading_stdin(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    module = tmp_path / "cat.wat"
    module.write_text(CAT)
    command = [sys.executable, "-m", "wasmhost", "run", str(module)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        time.sleep(1.0)  # started, blocked reading an empty pipe
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 143
        assert time.monotonic() - start < 1.0


def test_trap_carries_the_guest_stderr_tail(guest: Callable[[str], Path]) -> None:
    said: list[bytes] = []
    host = Host(args=["panic"], stderr=said.append)
    with Instance(Module(guest("trap")), host) as inst, pytest.raises(GuestTrap) as info:
        inst.run()
    assert "guest panicked on purpose" in info.value.stderr
    assert info.value.stderr == b"".join(said).decode()[-4096:]
