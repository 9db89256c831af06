"""``python -m wasmhost run`` with the Rust guests: output, exit codes, limits, bad input."""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli

Guest = Callable[[str], Path]


def test_hello_world_three_lines_a_second_apart(guest: Guest) -> None:
    start = time.monotonic()
    done = run_cli("run", guest("hello-world"), "3")
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, World!\n" * 3
    assert 2.0 <= elapsed < 6.0


def test_hello_world_lines_are_streamed_one_per_second(guest: Guest) -> None:
    import subprocess
    import sys

    stamps = []
    command = [sys.executable, "-m", "wasmhost", "run", str(guest("hello-world")), "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            assert line == "Hello, World!\n"
            stamps.append(time.monotonic())
        assert proc.wait(timeout=10) == 0
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 3 and all(0.8 < gap < 1.5 for gap in gaps), gaps


@pytest.mark.parametrize("code", ["0", "7", "255"])
def test_proc_exit_is_the_exit_code(guest: Guest, code: str) -> None:
    done = run_cli("run", guest("exit-code"), code)
    assert done.returncode == int(code)
    assert done.stderr == ""


def test_args_after_double_dash(guest: Guest) -> None:
    assert run_cli("run", guest("exit-code"), "--", "9").returncode == 9


def argv_lines(*args: str) -> str:
    """What the print-args guest prints for argv ``args``."""
    return "".join(f"argv[{i}]={arg}\n" for i, arg in enumerate(args))


@pytest.mark.parametrize("dash", [[], ["--"]], ids=["plain", "double-dash"])
def test_everything_after_the_module_is_a_guest_argument(guest: Guest, dash: list[str]) -> None:
    """Options after the module belong to the guest; only a first ``--`` is dropped."""
    done = run_cli("run", guest("print-args"), *dash, "127.0.0.1:18081", "--timeout", "1", "--", "a b")
    assert done.returncode == 0, done.stderr
    assert done.stdout == argv_lines("print-args.wasm", "127.0.0.1:18081", "--timeout", "1", "--", "a b")


def test_timeout_stops_an_infinite_loop(guest: Guest) -> None:
    start = time.monotonic()
    done = run_cli("run", "--timeout", "1", guest("trap"), "loop")
    elapsed = time.monotonic() - start
    assert done.returncode == 124
    assert re.fullmatch(r"wasmhost: .*trap\.wasm: stopped after its 1 s time limit\n", done.stderr)
    # Process start-up (Python import + module load) is included in the measurement.
    assert elapsed < 2.5


def test_timeout_guest_itself_stops_within_a_second_and_a_half(guest: Guest) -> None:
    from wasmhost import Host, Instance, Limits, Module, Timeout

    for mode in ("loop", "sleep-loop"):
        with Instance(Module(guest("trap")), Host(args=[mode], limits=Limits(timeout=1.0))) as inst:
            start = time.monotonic()
            with pytest.raises(Timeout):
                inst.run()
            assert time.monotonic() - start < 1.5


def test_memory_limit_fails_memory_grow_and_the_host_stays_healthy(guest: Guest) -> None:
    done = run_cli("run", "--memory-limit", "8", guest("trap"), "grow", "64")
    assert done.returncode == 0, done.stderr
    match = re.search(r"memory.grow failed after (\d+) MiB", done.stdout)
    assert match is not None, done.stdout
    assert int(match.group(1)) < 8
    unlimited = run_cli("run", guest("trap"), "grow", "64")
    assert "grew 64 MiB" in unlimited.stdout and "failed" not in unlimited.stdout


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("unreachable", "unreachable"), ("panic", "unreachable"), ("stack-overflow", "stack overflow")],
)
def test_traps_give_a_message_and_exit_1(guest: Guest, mode: str, kind: str) -> None:
    done = run_cli("run", guest("trap"), mode)
    assert done.returncode == 1
    assert f"guest trapped: {kind}" in done.stderr
    assert "Traceback" not in done.stderr
    if mode == "panic":
        assert "guest panicked on purpose" in done.stderr


def test_bad_inputs_one_line_exit_2(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    component = tmp_path / "component.wasm"
    component.write_bytes(b"\0asm\x0d\0\x01\0")
    unknown = tmp_path / "unknown.wat"
    unknown.write_text('(module (import "env" "nope" (func)) (import "wasi_snapshot_preview1" "bogus" (func)))')
    cases = {
        tmp_path / "missing.wasm": "no such file",
        text: "not a WebAssembly module (bad magic)",
        component: "is a WebAssembly component (component), not a core module;"
        " serve a wasi:http component with `wasmhost serve`",
        unknown: "unknown imports: env::nope, wasi_snapshot_preview1::bogus",
    }
    for path, reason in cases.items():
        done = run_cli("run", path)
        assert done.returncode == 2, (path, done.stderr)
        assert done.stderr == f"wasmhost: {path}: {reason}\n"
        assert done.stdout == ""
    # Nothing left behind: no compiled artifacts or temp files for modules that never ran
    # (the module with unknown imports compiled fine: its cache entry is all there may be).
    cache = Path(os.environ["WASMHOST_CACHE_DIR"])
    assert {p.suffix for p in cache.rglob("*") if p.is_file()} <= {".cwasm"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["component.wasm", "notes.txt", "unknown.wat"]


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--dir", "/sandbox:/definitely/not/here"], "/definitely/not/here: preopened directory does not exist"),
        (["--memory-limit", "0"], "must be positive"),
        (["--timeout", "soon"], "is not a number"),
        (["--env", "NOT_SET_ANYWHERE_42"], "expected KEY=VALUE"),
    ],
)
def test_bad_flags_one_line_exit_2(guest: Guest, flags: list[str], reason: str) -> None:
    done = run_cli("run", *flags, guest("exit-code"), "0")
    assert done.returncode == 2
    assert reason in done.stderr
    assert "Traceback" not in done.stderr


def test_inspect_reports_kind_imports_and_linking(guest: Guest, tmp_path: Path) -> None:
    import json

    done = run_cli("inspect", guest("http-hello"))
    assert done.returncode == 0
    assert "socket-server" in done.stdout and "links with wasmhost: yes" in done.stdout
    plugin = tmp_path / "tls.wat"
    plugin.write_text('(module (import "rustls_client" "new_codec" (func)) (func (export "_start")))')
    done = run_cli("inspect", "--json", plugin)
    assert done.returncode == 1
    info = json.loads(done.stdout)
    assert info["kind"] == "command" and info["unknown_imports"] == ["rustls_client::new_codec"]
    assert run_cli("inspect", tmp_path / "absent.wasm").returncode == 2
