"""Every host function, called with boundary and random arguments, answers with an errno.

A Python exception other than ``WasiError`` escaping a host function kills the guest as
"host function failed"; no argument a guest can pass may do that. The functions run over a
real descriptor table (stdio, a preopen, a read-only preopen, a file, sockets, a pipe) and
64 KiB of memory. Every descriptor is non-blocking and the context is already stopped, so a
call that would wait raises ``Interrupted`` at once instead of hanging the test.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmhost import Host, Instance, Module, Preopen
from wasmhost.wasi.abi import IOVEC, Errno
from wasmhost.wasi.preview1 import _SIGNATURES
from wasmhost.wasi.sockets import SOCKET_FUNCTIONS

from .world import FDS, SIZE, World, make_sandbox

U32 = [0, 1, 2**31 - 1, 2**32 - 1, SIZE - 1, SIZE - 4, SIZE]
U64 = [*U32, 2**63, 2**64 - 1]
DEFAULT = {"i": 16, "I": 0}

PREVIEW1 = sorted((name, params) for name, params in _SIGNATURES.items())
SOCKETS = sorted({(method, params) for _name, params, method in SOCKET_FUNCTIONS})


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sandbox(tmp_path_factory.mktemp("boundaries"))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The loop that runs the host functions that are coroutines (those that may wait)."""
    running = asyncio.new_event_loop()
    yield running
    running.close()


def _cases(params: str) -> Iterator[tuple[int, ...]]:
    """Boundary values one parameter at a time, on top of each descriptor as the first
    argument; then every parameter at the same boundary value."""
    for fd in FDS:
        base = (fd, *(DEFAULT[p] for p in params[1:]))
        for index, kind in enumerate(params):
            for value in U64 if kind == "I" else U32:
                yield (*base[:index], value, *base[index + 1 :])
    for value in U64:
        yield tuple(value if kind == "I" else value & 0xFFFFFFFF for kind in params)


def _memory() -> bytes:
    """Memory that lets calls get past the first check: an iovec array at 16 naming 64 bytes
    at 1024, and at 1024 the name of a file in the preopen."""
    iovecs = IOVEC.pack(1024, 64) * 4
    return bytes(16) + iovecs + bytes(1024 - 16 - len(iovecs)) + b"file.txt\0"


def _sweep(
    root: Path, loop: asyncio.AbstractEventLoop, provider: str, name: str, params: str
) -> dict[str, list[tuple[int, ...]]]:
    """Run every boundary case of one function; outcomes other than an errno, exit or wait."""
    failures: dict[str, list[tuple[int, ...]]] = {}
    outcomes: dict[str, int] = {}
    for args in _cases(params):
        world = World(root, loop, _memory())
        try:
            outcome = world.call(provider, name, args)
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a finding
            failures.setdefault(f"{type(exc).__name__}: {exc}", []).append(args)
            outcome = "raised"
        finally:
            world.close()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{name}{params}: {sum(outcomes.values())} cases, {outcomes}")
    return failures


@pytest.mark.parametrize(("name", "params"), PREVIEW1)
def test_preview1_function_takes_any_boundary_argument(
    sandbox: Path, loop: asyncio.AbstractEventLoop, name: str, params: str
) -> None:
    assert _sweep(sandbox, loop, "preview1", name, params) == {}


@pytest.mark.parametrize(("name", "params"), SOCKETS)
def test_socket_function_takes_any_boundary_argument(
    sandbox: Path, loop: asyncio.AbstractEventLoop, name: str, params: str
) -> None:
    assert _sweep(sandbox, loop, "sockets", name, params) == {}


def _arguments(params: str) -> st.SearchStrategy[tuple[int, ...]]:
    def one(kind: str) -> st.SearchStrategy[int]:
        values = U64 if kind == "I" else U32
        top = 2**64 - 1 if kind == "I" else 2**32 - 1
        return st.one_of(st.sampled_from([*values, *FDS]), st.integers(0, SIZE), st.integers(0, top))

    return st.tuples(*(one(kind) for kind in params))


_FUNCTIONS = [("preview1", name, params) for name, params in PREVIEW1] + [
    ("sockets", name, params) for name, params in SOCKETS
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), pattern=st.binary(min_size=1, max_size=64))
def test_random_arguments_and_memory(
    sandbox: Path, loop: asyncio.AbstractEventLoop, data: st.DataObject, pattern: bytes
) -> None:
    """Random arguments over memory filled with a random pattern (so iovecs, paths and
    subscriptions are random too)."""
    provider, name, params = data.draw(st.sampled_from(_FUNCTIONS))
    args = data.draw(_arguments(params))
    world = World(sandbox, loop, pattern * (SIZE // len(pattern) + 1))
    try:
        world.call(provider, name, args)
    finally:
        world.close()


# --- explicit answers for the arguments that used to raise ------------------------------


@pytest.fixture
def world(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[World]:
    """A sandbox of its own: the random calls above may leave files in the shared one."""
    w = World(make_sandbox(tmp_path), loop, _memory())
    yield w
    w.close()


FILE, RW_DIR = 5, 3
NREAD = 2048


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("fd_pread", (FILE, 16, 1, 2**63, NREAD), Errno.INVAL),
        ("fd_pread", (FILE, 16, 1, 2**64 - 1, NREAD), Errno.INVAL),  # not "the current position"
        ("fd_pwrite", (FILE, 16, 1, 2**63, NREAD), Errno.INVAL),
        ("fd_pwrite", (FILE, 16, 1, 2**64 - 1, NREAD), Errno.INVAL),
        ("fd_filestat_set_size", (FILE, 2**63), Errno.INVAL),
        ("fd_filestat_set_size", (FILE, 2**64 - 1), Errno.INVAL),
        ("fd_allocate", (FILE, 2**63, 1), Errno.INVAL),
        ("fd_allocate", (FILE, 0, 2**64 - 1), Errno.INVAL),
        ("fd_allocate", (FILE, 2**62, 2**62), Errno.FBIG),
        ("fd_advise", (FILE, 0, 2**64 - 1, 0), Errno.INVAL),  # a negative length
        ("fd_seek", (FILE, 2**63, 0, NREAD), Errno.INVAL),
        ("fd_filestat_set_times", (FILE, 2**63, 0, 1), Errno.OVERFLOW),
        ("fd_filestat_set_times", (FILE, 0, 2**64 - 1, 4), Errno.OVERFLOW),
        ("path_filestat_set_times", (RW_DIR, 0, 1024, 8, 2**64 - 1, 0, 1), Errno.OVERFLOW),
        ("path_symlink", (1024, 9, RW_DIR, 1024, 3), Errno.INVAL),  # a NUL in the target
    ],
)
def test_odd_arguments_get_the_errno_linux_gives(
    sandbox: Path, world: World, name: str, args: tuple[int, ...], expected: Errno
) -> None:
    before = sorted((p.name, p.lstat().st_size, p.lstat().st_mtime_ns) for p in (sandbox / "rw").iterdir())
    assert world.call("preview1", name, args) == expected.name
    assert sorted((p.name, p.lstat().st_size, p.lstat().st_mtime_ns) for p in (sandbox / "rw").iterdir()) == before


def test_pread_with_offset_minus_one_does_not_read_at_the_current_position(world: World) -> None:
    assert world.call("preview1", "fd_pread", (FILE, 16, 1, 2**64 - 1, NREAD)) == "INVAL"
    assert world.call("preview1", "fd_tell", (FILE, NREAD)) == "SUCCESS"
    assert struct.unpack_from("<Q", world.buffer, NREAD)[0] == 0


def test_readdir_passes_names_through_as_bytes(world: World) -> None:
    """A name that is not UTF-8 reaches the guest unchanged (it used to raise)."""
    assert world.call("preview1", "fd_readdir", (RW_DIR, 4096, 4096, 0, NREAD)) == "SUCCESS"
    used = struct.unpack_from("<I", world.buffer, NREAD)[0]
    names, pos = [], 4096
    while pos + 24 <= 4096 + used:
        namlen = struct.unpack_from("<I", world.buffer, pos + 16)[0]
        names.append(bytes(world.buffer[pos + 24 : pos + 24 + namlen]))
        pos += 24 + namlen
    assert sorted(names) == sorted([b".", b"..", b"sub", b"file.txt", b"link", b"caf\xe9"])


def test_readdir_cookie_past_the_end_is_an_empty_read(world: World) -> None:
    assert world.call("preview1", "fd_readdir", (RW_DIR, 4096, 4096, 2**64 - 1, NREAD)) == "SUCCESS"
    assert struct.unpack_from("<I", world.buffer, NREAD)[0] == 0


PREAD_PAST_OFF_T = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func $pread (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "file.txt")
  (func (export "_start")
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 8) (i32.const 0)
                      (i64.const 6) (i64.const 0) (i32.const 0) (i32.const 0)))
    (i32.store (i32.const 8) (i32.const 200))
    (i32.store (i32.const 12) (i32.const 16))
    (call $exit (call $pread (i32.load (i32.const 0)) (i32.const 8) (i32.const 1)
                             (i64.const 0x8000000000000000) (i32.const 16)))))
"""


def test_guest_passing_an_offset_past_off_t_gets_inval(sandbox: Path) -> None:
    """End to end: the guest gets an errno back and runs on (it used to trap as "host function failed")."""
    host = Host(preopens=[Preopen("/rw", sandbox / "rw")], stdout=None)
    with Instance(Module(PREAD_PAST_OFF_T.encode()), host) as inst:
        assert inst.run() == Errno.INVAL
