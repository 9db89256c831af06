"""Hostile guests (WAT): each ends as a guest error or a refusal, one log line names it, the
neighbour guest on the same loop keeps serving, and no descriptor or thread is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServeFactory
from tests.hostile.conftest import Neighbour, guest_lines
from wasmhost import GuestTrap, Host, Instance, Interrupted, Limits, Module, Preopen, Timeout
from wasmhost.net.policy import Network, Rule
from wasmhost.wasi.abi import Errno

P1 = '"wasi_snapshot_preview1"'
IMPORTS = {
    "fd_write": "(param i32 i32 i32 i32) (result i32)",
    "fd_read": "(param i32 i32 i32 i32) (result i32)",
    "fd_close": "(param i32) (result i32)",
    "proc_exit": "(param i32)",
    "path_open": "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
    "sock_open": "(param i32 i32 i32) (result i32)",
    "sock_connect": "(param i32 i32 i32) (result i32)",
    "sock_recv": "(param i32 i32 i32 i32 i32 i32) (result i32)",
    "sock_bind": "(param i32 i32 i32) (result i32)",
    "sock_listen": "(param i32 i32) (result i32)",
    "sock_accept": "(param i32 i32) (result i32)",
    "path_create_directory": "(param i32 i32 i32) (result i32)",
    "path_filestat_get": "(param i32 i32 i32 i32 i32) (result i32)",
    "path_filestat_set_times": "(param i32 i32 i32 i32 i64 i64 i32) (result i32)",
    "path_link": "(param i32 i32 i32 i32 i32 i32 i32) (result i32)",
    "path_readlink": "(param i32 i32 i32 i32 i32 i32) (result i32)",
    "path_remove_directory": "(param i32 i32 i32) (result i32)",
    "path_rename": "(param i32 i32 i32 i32 i32 i32) (result i32)",
    "path_symlink": "(param i32 i32 i32 i32 i32) (result i32)",
    "path_unlink_file": "(param i32 i32 i32) (result i32)",
}


def wat(body: str, *, data: str = "", pages: int = 1) -> str:
    """A module importing every function above, exporting ``memory`` and ``_start``."""
    imports = "\n".join(f'  (import {P1} "{name}" (func ${name} {sig}))' for name, sig in IMPORTS.items())
    return f'(module\n{imports}\n  (memory (export "memory") {pages})\n{data}\n  (func (export "_start") {body}))'


def module(text: str, name: str) -> Module:
    return Module(text.encode(), name=name)


def test_memory_grow_is_refused_at_the_limit(
    hostile_case: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    limit = 4 << 20
    text = wat("(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable")

    async def scenario(_neighbour: Neighbour) -> None:
        with Instance(module(text, "grow"), Host(limits=Limits(memory=limit))) as instance:
            with pytest.raises(GuestTrap) as trapped:
                await instance.run_async()
            assert 0 < instance.memory_bytes <= limit
        assert trapped.value.kind == "unreachable"

    hostile_case(scenario)
    assert guest_lines(caplog, "grow") == ["grow: guest trapped: unreachable"]


def test_descriptor_limit_gives_mfile_and_the_host_keeps_serving(
    hostile_case: Callable[..., object], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    # Open a file, then a socket, ... until refused; write (errno, count) to stderr and trap.
    opened = (
        "(local $i i32) (local $err i32)"
        "(block $done (loop $open"
        " (if (i32.and (local.get $i) (i32.const 1))"
        "  (then (local.set $err (call $sock_open (i32.const 1) (i32.const 2) (i32.const 0))))"
        "  (else (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 4)"
        "   (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))))"
        " (br_if $done (local.get $err))"
        " (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $open)))"
        "(i32.store (i32.const 0) (local.get $err)) (i32.store (i32.const 4) (local.get $i))"
        "(i32.store (i32.const 16) (i32.const 0)) (i32.store (i32.const 20) (i32.const 8))"
        "(drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24))) unreachable"
    )
    text = wat(opened, data='(data (i32.const 64) "file")')
    report: list[bytes] = []
    host = Host(preopens=[Preopen(".", tmp_path)], stderr=report.append, limits=Limits(max_fds=16))

    async def scenario(_neighbour: Neighbour) -> None:
        with Instance(module(text, "fds"), host) as instance, pytest.raises(GuestTrap):
            await instance.run_async()

    hostile_case(scenario)
    errno, count = struct.unpack("<II", b"".join(report))
    assert (errno, count) == (Errno.MFILE, 16 - 4)  # stdio and the preopen hold 4
    assert guest_lines(caplog, "fds") == [
        "fds: descriptor limit 16 reached: opens and accepts get EMFILE",
        "fds: guest trapped: unreachable",
    ]


def test_accepting_past_the_descriptor_limit(hostile_case: Callable[..., object]) -> None:
    """A listener accepting until its table is full: the connection that does not fit is closed
    by the host (its client sees the end), the guest gets EMFILE, and nothing stays open."""
    text = wat(
        "(local $err i32)"
        "(drop (call $sock_open (i32.const 1) (i32.const 2) (i32.const 0)))"
        "(i32.store (i32.const 16) (i32.const 32)) (i32.store (i32.const 20) (i32.const 4))"
        "(i32.store (i32.const 32) (i32.const 0x0100007f))"
        "(drop (call $sock_bind (i32.load (i32.const 0)) (i32.const 16) (i32.const 0)))"
        "(drop (call $sock_listen (i32.load (i32.const 0)) (i32.const 16)))"
        "(loop $accept (local.set $err (call $sock_accept (i32.load (i32.const 0)) (i32.const 4)))"
        " (br_if $accept (i32.eqz (local.get $err))))"
        "(call $proc_exit (local.get $err))"
    )

    async def scenario(_neighbour: Neighbour) -> tuple[int, list[bytes], int]:
        with Instance(module(text, "acceptor"), Host(limits=Limits(max_fds=6))) as instance:
            task = asyncio.ensure_future(instance.run_async())
            while not instance.listening:
                await asyncio.sleep(0.01)
            clients = [await asyncio.open_connection(*instance.listening[0]) for _ in range(3)]
            code = await asyncio.wait_for(task, 5)
            # Two fit beside stdio and the listener; the third was closed by the host.
            ends = [await asyncio.wait_for(reader.read(), 5) for reader, _ in clients[2:]]
            for _, writer in clients:
                writer.close()
            accepted = instance.connections.accepted
        assert instance.connections.open == 0
        return code, ends, accepted

    code, ends, accepted = hostile_case(scenario)  # type: ignore[misc]
    assert code == Errno.MFILE and ends == [b""] and accepted == 3


SPIN = wat("(loop $spin (br $spin))")


def test_infinite_loop_ends_by_timeout(hostile_case: Callable[..., object], caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(_neighbour: Neighbour) -> float:
        with Instance(module(SPIN, "spin"), Host(limits=Limits(timeout=0.3))) as instance:
            start = time.monotonic()
            with pytest.raises(Timeout):
                await instance.run_async()
            return time.monotonic() - start - 0.3

    late = hostile_case(scenario)
    assert isinstance(late, float) and late < 0.1, late
    print(f"timeout: the spinning guest ended {late * 1000:.0f} ms after its limit")
    assert guest_lines(caplog, "spin") == ["spin: stopped after its 0.3 s time limit"]


def test_infinite_loop_ends_by_stop_while_the_neighbour_serves(
    hostile_case: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(neighbour: Neighbour) -> float:
        with Instance(module(SPIN, "spin"), Host()) as instance:
            task = asyncio.ensure_future(instance.run_async())
            await asyncio.sleep(0.05)
            for _ in range(3):  # the spinning guest yields at every epoch tick: the neighbour answers
                await neighbour.assert_serves()
            assert not task.done()
            start = time.monotonic()
            instance.stop()
            with pytest.raises(Interrupted):
                await task
            return time.monotonic() - start

    took = hostile_case(scenario)
    assert isinstance(took, float) and took < 0.1, took
    print(f"stop(): the spinning guest ended in {took * 1000:.1f} ms")
    assert guest_lines(caplog, "spin") == ["spin: stopped"]


def test_infinite_loop_ends_by_sigterm(serve: ServeFactory, tmp_path: Path) -> None:
    text = wat(
        "(i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 9))"
        "(drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8))) (loop $spin (br $spin))",
        data='(data (i32.const 64) "spinning\\n")',
    )
    path = tmp_path / "spin.wat"
    path.write_text(text)
    served = serve(None, str(path), wait=False)
    served.read_log_until("spinning")
    time.sleep(0.2)
    start = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    served.read_log_until(r"spin\.wat: stopped$")
    stopped = time.monotonic() - start
    assert served.proc.wait(5) == 0, "".join(served.log)
    assert stopped < 0.1, stopped
    assert sum("spin.wat: stopped" in line for line in served.log) == 1, "".join(served.log)
    print(f"SIGTERM to a spinning guest's serve process: stopped in {stopped * 1000:.0f} ms")


def test_deep_recursion_traps(hostile_case: Callable[..., object], caplog: pytest.LogCaptureFixture) -> None:
    text = (
        '(module (memory (export "memory") 1) (func $deeper (param i64) (result i64)'
        " (call $deeper (i64.add (local.get 0) (i64.const 1))))"
        ' (func (export "_start") (drop (call $deeper (i64.const 0)))))'
    )

    async def scenario(_neighbour: Neighbour) -> str | None:
        with Instance(module(text, "recurse"), Host()) as instance, pytest.raises(GuestTrap) as trapped:
            await instance.run_async()
        return trapped.value.kind

    assert hostile_case(scenario) == "stack overflow"
    assert guest_lines(caplog, "recurse") == ["recurse: guest trapped: stack overflow"]


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_writing_1gb_to_a_pipe_nobody_reads_suspends_the_guest(
    hostile_case: Callable[..., object], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # 16384 writes of 64 KiB = 1 GiB to stdout.
    text = wat(
        "(local $i i32) (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 40000))"
        "(loop $write (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))"
        " (local.set $i (i32.add (local.get $i) (i32.const 1)))"
        " (br_if $write (i32.lt_u (local.get $i) (i32.const 26844))))",
        pages=2,
    )
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, and never read

    async def scenario(_neighbour: Neighbour) -> tuple[int, int]:
        rss = _rss()
        with Instance(module(text, "flood"), Host(stdout=fifo)) as instance:
            task = asyncio.ensure_future(instance.run_async())
            await asyncio.sleep(0.5)
            assert not task.done() and instance.suspensions > 0
            grown = _rss() - rss
            instance.stop()
            with pytest.raises(Interrupted):
                await task
        return grown, instance.suspensions

    try:
        grown, _ = hostile_case(scenario)  # type: ignore[misc]
        assert grown < 16 << 20, grown
        queued = len(os.read(reader, 1 << 20))
        assert 0 < queued <= 1 << 20
        print(f"1 GiB to a pipe nobody reads: {queued} bytes queued, host RSS {grown / 2**20:+.1f} MiB")
    finally:
        os.close(reader)
    assert guest_lines(caplog, "flood") == ["flood: stopped"]


def test_overlapping_and_out_of_bounds_pointers(hostile_case: Callable[..., object]) -> None:
    """Out-pointers and iovec arrays that overlap the buffers they describe: the host decodes
    arguments before it writes anything, never writes outside the guest's memory, and says
    FAULT for ranges past its end."""
    import socket as pysocket

    listener = pysocket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    calls = [
        # fd_read from stdin into [100, 108) through an iovec stored at 100; nread also at 100.
        "(i32.store (i32.const 100) (i32.const 100)) (i32.store (i32.const 104) (i32.const 8))"
        "(i32.store (i32.const 1000) (call $fd_read (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 100)))",
        # fd_write: iovec 0 = [300, 304), iovec 1 = the iovec array itself; nwritten over iovec 0's length.
        "(i32.store (i32.const 200) (i32.const 300)) (i32.store (i32.const 204) (i32.const 4))"
        "(i32.store (i32.const 208) (i32.const 200)) (i32.store (i32.const 212) (i32.const 16))"
        "(i32.store (i32.const 1004) (call $fd_write (i32.const 1) (i32.const 200) (i32.const 2) (i32.const 204)))",
        # out of bounds: an iovec running past the end; nread past the end.
        "(i32.store (i32.const 500) (i32.const 65530)) (i32.store (i32.const 504) (i32.const 100))"
        "(i32.store (i32.const 1008) (call $fd_write (i32.const 1) (i32.const 500) (i32.const 1) (i32.const 508)))",
        "(i32.store (i32.const 510) (i32.const 0)) (i32.store (i32.const 514) (i32.const 4))"
        "(i32.store (i32.const 1012) (call $fd_read (i32.const 0) (i32.const 510) (i32.const 1) (i32.const 65534)))",
        # sock_recv into [400, 416) through an iovec at 400; out_len at 400, out_flags at 404.
        "(drop (call $sock_open (i32.const 1) (i32.const 2) (i32.const 600)))"
        "(i32.store (i32.const 608) (i32.const 616)) (i32.store (i32.const 612) (i32.const 4))"
        "(i32.store (i32.const 616) (i32.const 0x0100007f))"
        "(i32.store (i32.const 1016) (call $sock_connect (i32.load (i32.const 600)) (i32.const 608)"
        f" (i32.const {port})))"
        "(i32.store (i32.const 400) (i32.const 400)) (i32.store (i32.const 404) (i32.const 16))"
        "(i32.store (i32.const 1020) (call $sock_recv (i32.load (i32.const 600)) (i32.const 400) (i32.const 1)"
        " (i32.const 0) (i32.const 400) (i32.const 404)))",
        # out-pointers past the end for sock_recv
        "(i32.store (i32.const 1024) (call $sock_recv (i32.load (i32.const 600)) (i32.const 400) (i32.const 1)"
        " (i32.const 0) (i32.const 65534) (i32.const 404)))",
    ]
    dump = (
        "(i32.store (i32.const 2000) (i32.const 0)) (i32.store (i32.const 2004) (i32.const 1100))"
        "(drop (call $fd_write (i32.const 1) (i32.const 2000) (i32.const 1) (i32.const 2008)))"
    )
    text = wat("".join(calls) + dump, data='(data (i32.const 300) "head")')
    out: list[bytes] = []
    network = Network(outbound=Rule.parse(f"127.0.0.1:{port}"))
    host = Host(stdin=b"ABCDEFGHIJKL", stdout=out.append, network=network)

    async def peer() -> None:
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(listener)
        await loop.sock_sendall(conn, b"0123456789abcdef")
        await asyncio.sleep(0.2)
        conn.close()

    async def scenario(_neighbour: Neighbour) -> None:
        listener.setblocking(False)
        sender = asyncio.ensure_future(peer())
        with Instance(module(text, "pointers"), host) as instance:
            assert await instance.run_async() == 0
        await sender

    try:
        hostile_case(scenario)
    finally:
        listener.close()
    written, memory = b"".join(out[:-1]), b"".join(out[-1:])
    iovecs = struct.pack("<IIII", 300, 4, 200, 16)
    assert written == b"head" + iovecs  # gathered as the iovecs were when the call began
    errnos = struct.unpack_from("<7I", memory, 1000)
    assert errnos == (0, 0, Errno.FAULT, Errno.FAULT, 0, 0, Errno.FAULT), errnos
    assert memory[100:108] == struct.pack("<I", 8) + b"EFGH"  # data, then nread over its start
    assert struct.unpack_from("<II", memory, 200) == (300, 20)  # nwritten over iovec 0's length
    assert memory[400:416] == struct.pack("<IH", 16, 0) + b"6789abcdef"


ESCAPES = ("../outside/{leaf}", "{outside}/{leaf}", "link/{leaf}")
# (function, what its path names: an existing "file", "dir", or a "new" name), and the call with
# $p/$n for the escaping path, "ok" (2 bytes at 32) for a second path inside the sandbox.
PATH_CALLS = {
    "path_create_directory": ("new", "(call $path_create_directory (i32.const 3) (i32.const 64) (i32.const $n))"),
    "path_filestat_get": ("file", "(call $path_filestat_get (i32.const 3) (i32.const 1) (i32.const 64)"
                                  " (i32.const $n) (i32.const 4096))"),
    "path_filestat_set_times": ("file", "(call $path_filestat_set_times (i32.const 3) (i32.const 1) (i32.const 64)"
                                        " (i32.const $n) (i64.const 0) (i64.const 0) (i32.const 5))"),
    "path_link (source)": ("file", "(call $path_link (i32.const 3) (i32.const 0) (i32.const 64) (i32.const $n)"
                                   " (i32.const 3) (i32.const 40) (i32.const 4))"),
    "path_link (target)": ("new", "(call $path_link (i32.const 3) (i32.const 0) (i32.const 32) (i32.const 2)"
                                  " (i32.const 3) (i32.const 64) (i32.const $n))"),
    "path_open": ("file", "(call $path_open (i32.const 3) (i32.const 1) (i32.const 64) (i32.const $n) (i32.const 0)"
                          " (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 4096))"),
    "path_open (create)": ("new", "(call $path_open (i32.const 3) (i32.const 1) (i32.const 64) (i32.const $n)"
                                  " (i32.const 1) (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 4096))"),
    "path_readlink": ("file", "(call $path_readlink (i32.const 3) (i32.const 64) (i32.const $n) (i32.const 4096)"
                              " (i32.const 256) (i32.const 4092))"),
    "path_remove_directory": ("dir", "(call $path_remove_directory (i32.const 3) (i32.const 64) (i32.const $n))"),
    "path_rename (source)": ("file", "(call $path_rename (i32.const 3) (i32.const 64) (i32.const $n) (i32.const 3)"
                                     " (i32.const 40) (i32.const 4))"),
    "path_rename (target)": ("new", "(call $path_rename (i32.const 3) (i32.const 32) (i32.const 2) (i32.const 3)"
                                    " (i32.const 64) (i32.const $n))"),
    "path_symlink": ("new", "(call $path_symlink (i32.const 32) (i32.const 2) (i32.const 3) (i32.const 64)"
                            " (i32.const $n))"),
    "path_unlink_file": ("file", "(call $path_unlink_file (i32.const 3) (i32.const 64) (i32.const $n))"),
}  # fmt: skip
LEAVES = {"file": "secret", "dir": "d", "new": "new"}


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under ``root``: (mode, mtime, content or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        body = b""
        if path.is_symlink():
            body = os.fsencode(os.readlink(path))
        elif path.is_file():
            body = path.read_bytes()
        found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, body)
    return found


def test_paths_escaping_the_preopen_are_refused_by_every_path_call(
    hostile_case: Callable[..., object], tmp_path: Path
) -> None:
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    sandbox.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (outside / "d").mkdir()
    (sandbox / "ok").write_text("ok")
    (sandbox / "link").symlink_to(outside)
    before = _tree(outside)
    host = Host(preopens=[Preopen(".", sandbox)])

    async def scenario(_neighbour: Neighbour) -> dict[str, int]:
        results = {}
        for name, (kind, call) in PATH_CALLS.items():
            for pattern in ESCAPES:
                path = pattern.format(outside=outside, leaf=LEAVES[kind])
                results[f"{name} {path}"] = await _exit_async(call, path, host)
        # The harness can tell success: the same call inside the sandbox works.
        results["inside"] = await _exit_async(PATH_CALLS["path_filestat_get"][1], "ok", host)
        return results

    results = hostile_case(scenario)
    assert isinstance(results, dict)
    assert results.pop("inside") == 0
    allowed = {Errno.NOTCAPABLE, Errno.PERM, Errno.NOENT, Errno.ACCES, Errno.LOOP, Errno.XDEV}
    refused = {case: Errno(code).name for case, code in results.items() if code not in allowed}
    assert not refused, refused
    print("path escapes:", dict(Counter(Errno(code).name for code in results.values())))
    assert _tree(outside) == before
    assert sorted(p.name for p in sandbox.iterdir()) == ["link", "ok"]


async def _exit_async(call: str, path: str, host: Host) -> int:
    encoded = path.encode()
    body = call.replace("$n", str(len(encoded)))
    data = f'(data (i32.const 32) "ok") (data (i32.const 40) "ok-2") (data (i32.const 64) "{path}")'
    text = wat(f"(call $proc_exit {body})", data=data)
    with Instance(module(text, "escape"), host) as instance:
        return await instance.run_async()


def test_denied_connects_in_a_loop_log_once(
    hostile_case: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    def looping(port_step: int) -> str:
        return wat(
            "(local $i i32) (local $err i32)"
            "(i32.store (i32.const 16) (i32.const 32)) (i32.store (i32.const 20) (i32.const 4))"
            "(i32.store (i32.const 32) (i32.const 0x01ffff0a))"  # 10.255.255.1
            "(loop $again"
            " (drop (call $sock_open (i32.const 1) (i32.const 2) (i32.const 0)))"
            " (local.set $err (call $sock_connect (i32.load (i32.const 0)) (i32.const 16)"
            f"  (i32.add (i32.const 80) (i32.mul (local.get $i) (i32.const {port_step})))))"
            " (drop (call $fd_close (i32.load (i32.const 0))))"
            " (local.set $i (i32.add (local.get $i) (i32.const 1)))"
            " (br_if $again (i32.and (i32.eq (local.get $err) (i32.const 2))"
            "  (i32.lt_u (local.get $i) (i32.const 500)))))"
            "(call $proc_exit (local.get $err))"
        )

    async def scenario(_neighbour: Neighbour) -> tuple[int, int]:
        with Instance(module(looping(0), "dialer"), Host()) as same:
            same_code = await same.run_async()
        with Instance(module(looping(1), "scanner"), Host()) as scanning:
            scan_code = await scanning.run_async()
        return same_code, scan_code

    assert hostile_case(scenario) == (Errno.ACCES, Errno.ACCES)
    denied = [line for line in guest_lines(caplog, "dialer") if "denied" in line]
    assert len(denied) == 1 and "10.255.255.1:80" in denied[0], denied
    scanned = guest_lines(caplog, "scanner")
    assert 1 < len(scanned) <= 17 and "no more are logged" in scanned[-1], scanned
