"""What a guest cannot do to its host: write through a read-only preopen, blow up host
memory through stderr, take every host descriptor. Hostile guests are WAT, run for real."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, open_fds, run_cli
from wasmhost import Host, Instance, Limits, Module, Preopen
from wasmhost.wasi.abi import FILE_RIGHTS, Errno, Rights, WasiError
from wasmhost.wasi.context import WasiContext
from wasmhost.wasi.fdtable import (
    CALLBACK_CHUNK,
    MAX_RW,
    CallbackOutput,
    Directory,
    FdTable,
    NullStream,
    OsFile,
    StderrTail,
)
from wasmhost.wasi.memory import GuestMemory
from wasmhost.wasi.preview1 import Preview1
from wasmhost.wasi.sockets import Socket

R = Rights


class Harness:
    """Preview1 over a real descriptor table and 64 KiB of memory, called from Python."""

    SIZE = 65536

    def __init__(self, fds: FdTable) -> None:
        self.buffer = bytearray(self.SIZE)
        self.fds = fds
        self.ctx = WasiContext([b"guest"], [b"K=V"], fds, lambda: None)
        self.ctx.memory = GuestMemory.of_buffer(self.buffer)
        self.p1 = Preview1(self.ctx)
        self._free = 1024

    def put(self, data: bytes) -> tuple[int, int]:
        """Copy ``data`` into guest memory: its (pointer, length)."""
        ptr = self._free
        self.buffer[ptr : ptr + len(data)] = data
        self._free += len(data) + 8
        return ptr, len(data)

    def errno(self, name: str, *args: int) -> Errno:
        """Call a host function as the linker would: SUCCESS or the errno it raised."""
        try:
            result = getattr(self.p1, name)(*args)
            if inspect.iscoroutine(result):  # a function that may wait: none of these does
                asyncio.run(result)
        except WasiError as exc:
            return exc.errno
        return Errno.SUCCESS

    def open(self, dirfd: int, path: str, oflags: int = 0, base: int = 0, inheriting: int = 0) -> tuple[Errno, int]:
        """path_open: (errno, new fd)."""
        err = self.errno("path_open", dirfd, 0, *self.put(path.encode()), oflags, base, inheriting, 0, 0)
        return err, int.from_bytes(self.buffer[0:4], "little")


# --- 1. a read-only preopen stays read-only ----------------------------------------------

HARD_LINK_THEN_WRITE = """
(module
  (import "wasi_snapshot_preview1" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "ro.txt")
  (data (i32.const 200) "hl")
  (data (i32.const 300) "pwned")
  (func (export "_start") (local $err i32)
    ;; hard-link /ro/ro.txt (fd 3) as /rw/hl (fd 4), then open /rw/hl for writing and write
    (local.set $err (call $link (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 6)
                                (i32.const 4) (i32.const 200) (i32.const 2)))
    (if (i32.eqz (local.get $err))
      (then
        (drop (call $open (i32.const 4) (i32.const 0) (i32.const 200) (i32.const 2) (i32.const 0)
                          (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0)))
        (i32.store (i32.const 8) (i32.const 300))
        (i32.store (i32.const 12) (i32.const 5))
        (drop (call $write (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))))
    (call $exit (local.get $err))))
"""


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under ``root``: (mode, mtime, content) by relative path."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, content)
    return found


@pytest.fixture
def boxes(tmp_path: Path) -> tuple[Path, Path]:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    (ro / "sub").mkdir(parents=True)
    rw.mkdir()
    (ro / "ro.txt").write_text("original")
    (ro / "sub" / "inner.txt").write_text("inner")
    (rw / "w.txt").write_text("writable")
    return ro, rw


def test_hard_link_out_of_a_read_only_preopen_is_refused(boxes: tuple[Path, Path]) -> None:
    ro, rw = boxes
    host = Host(preopens=[Preopen("/ro", ro, read_only=True), Preopen("/rw", rw)], stdout=None)
    with Instance(Module(HARD_LINK_THEN_WRITE.encode()), host) as inst:
        assert inst.run() == Errno.NOTCAPABLE
    assert (ro / "ro.txt").read_text() == "original"
    assert not (rw / "hl").exists()


def _write_attempts(h: Harness, ro: int, rw: int) -> dict[str, Errno]:
    """Every way to change the tree under directory ``ro``, with ``rw`` a writable directory."""
    name = h.put(b"ro.txt")
    return {
        "create dir": h.errno("path_create_directory", ro, *h.put(b"newdir")),
        "create file": h.open(ro, "new.txt", oflags=1)[0],
        "truncate": h.open(ro, "ro.txt", oflags=8, base=R.FD_READ)[0],
        "open for write": h.open(ro, "ro.txt", base=R.FD_WRITE)[0],
        "open to resize": h.open(ro, "ro.txt", base=R.FD_FILESTAT_SET_SIZE)[0],
        "open to allocate": h.open(ro, "ro.txt", base=R.FD_ALLOCATE)[0],
        "hard link out": h.errno("path_link", ro, 0, *name, rw, *h.put(b"hl")),
        "hard link in": h.errno("path_link", rw, 0, *h.put(b"w.txt"), ro, *h.put(b"in")),
        "rename out": h.errno("path_rename", ro, *name, rw, *h.put(b"moved")),
        "rename in": h.errno("path_rename", rw, *h.put(b"w.txt"), ro, *h.put(b"moved")),
        "rename inside": h.errno("path_rename", ro, *name, ro, *h.put(b"renamed")),
        "symlink": h.errno("path_symlink", *h.put(b"ro.txt"), ro, *h.put(b"sl")),
        "unlink": h.errno("path_unlink_file", ro, *name),
        "rmdir": h.errno("path_remove_directory", ro, *h.put(b"sub")),
        "path set times": h.errno("path_filestat_set_times", ro, 0, *name, 1, 1, 5),
        "dir set times": h.errno("fd_filestat_set_times", ro, 1, 1, 5),
    }


def _file_write_attempts(h: Harness, fd: int) -> dict[str, Errno]:
    iov = h.put((h.SIZE - 16).to_bytes(4, "little") + (4).to_bytes(4, "little"))[0]
    return {
        "write": h.errno("fd_write", fd, iov, 1, 0),
        "pwrite": h.errno("fd_pwrite", fd, iov, 1, 0, 0),
        "allocate": h.errno("fd_allocate", fd, 0, 100),
        "set size": h.errno("fd_filestat_set_size", fd, 0),
        "set times": h.errno("fd_filestat_set_times", fd, 1, 1, 5),
        "datasync": h.errno("fd_datasync", fd),
        "regain write": h.errno("fd_fdstat_set_rights", fd, R.FD_READ | R.FD_WRITE, 0),
    }


def test_nothing_under_a_read_only_preopen_can_be_changed(boxes: tuple[Path, Path]) -> None:
    """The preopen, a directory opened under it and a file opened under it (asking for every
    right) each refuse every change with NOTCAPABLE, and the trees stay as they were."""
    ro, rw = boxes
    fds = FdTable()
    for index in range(3):
        assert fds.add(NullStream()) == index
    fds.add(Directory.open_preopen(str(ro), "/ro", read_only=True))
    fds.add(Directory.open_preopen(str(rw), "/rw", read_only=False))
    h = Harness(fds)
    everything = (1 << 30) - 1
    # every right that opening without write access can ask for (asking to write is refused below)
    asked = everything & ~(R.FD_WRITE | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE | R.FD_DATASYNC)
    err, sub = h.open(3, "sub", oflags=2, base=asked, inheriting=everything)
    assert err == Errno.SUCCESS
    err, file_fd = h.open(3, "ro.txt", base=asked, inheriting=everything)
    assert err == Errno.SUCCESS
    before = (_tree(ro), _tree(rw))
    try:
        results = {f"preopen: {k}": v for k, v in _write_attempts(h, 3, 4).items()}
        results |= {f"subdir: {k}": v for k, v in _write_attempts(h, sub, 4).items()}
        results |= {f"file: {k}": v for k, v in _file_write_attempts(h, file_fd).items()}
        assert results == dict.fromkeys(results, Errno.NOTCAPABLE)
        assert (_tree(ro), _tree(rw)) == before
        iov = h.put((h.SIZE - 16).to_bytes(4, "little") + (8).to_bytes(4, "little"))[0]
        assert h.errno("fd_read", file_fd, iov, 1, 0) == Errno.SUCCESS  # still readable
        assert h.buffer[h.SIZE - 16 : h.SIZE - 8] == b"original"
    finally:
        fds.close_all()


def test_writable_preopen_grants_what_read_only_withholds(boxes: tuple[Path, Path]) -> None:
    """The same attempts on a writable preopen succeed: the refusals above come from the rights."""
    ro, rw = boxes
    fds = FdTable()
    for _ in range(3):
        fds.add(NullStream())
    fds.add(Directory.open_preopen(str(ro), "/ro", read_only=False))
    fds.add(Directory.open_preopen(str(rw), "/rw", read_only=False))
    h = Harness(fds)
    try:
        assert h.errno("path_link", 3, 0, *h.put(b"ro.txt"), 4, *h.put(b"hl")) == Errno.SUCCESS
        assert h.open(3, "ro.txt", base=R.FD_WRITE)[0] == Errno.SUCCESS
    finally:
        fds.close_all()
    assert (rw / "hl").read_text() == "original"


# --- 2. stderr writes cost the host O(bytes written) ---------------------------------------

# 1 MiB of memory: 1,024 iovecs at 0 each spanning all of it, then 'a'..'z' repeated.
# "go" writes them to stderr in one fd_write and returns nwritten; "boom" traps.
SPRAY = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 16 16)
  (func (export "go") (result i32) (local $i i32)
    (loop $iov
      (i32.store (local.get $i) (i32.const 0))
      (i32.store (i32.add (local.get $i) (i32.const 4)) (i32.const 1048576))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br_if $iov (i32.lt_u (local.get $i) (i32.const 8192))))
    (loop $fill
      (i32.store8 (local.get $i) (i32.add (i32.const 97) (i32.rem_u (local.get $i) (i32.const 26))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 1048576))))
    (if (call $write (i32.const 2) (i32.const 0) (i32.const 1024) (i32.const 8192)) (then unreachable))
    (i32.load (i32.const 8192)))
  (func (export "boom") unreachable))
"""

_SPRAY_RUNNER = """
import json, sys
from pathlib import Path
from wasmhost import GuestTrap, Host, Instance, Module

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

mode = sys.argv[2]
received = []
stderr = {"callable": received.append, "none": None, "path": Path("/dev/null")}[mode]
with Instance(Module(Path(sys.argv[1]).read_bytes()), Host(stderr=stderr)) as inst:
    before = hwm()
    written = inst.call("go")
    grown = hwm() - before
    try:
        inst.call("boom")
    except GuestTrap as trap:
        tail = trap.stderr
result = {"grown": grown, "written": written, "tail": tail, "received": [r.hex() for r in received]}
Path(sys.argv[3]).write_text(json.dumps(result))
"""


def _spray_memory() -> bytes:
    iovecs = ((0).to_bytes(4, "little") + (1 << 20).to_bytes(4, "little")) * 1024
    return iovecs + bytes(97 + i % 26 for i in range(len(iovecs), 1 << 20))


@pytest.mark.parametrize(
    ("mode", "expected_written"),
    [("callable", 1 << 20), ("none", 1 << 30), ("path", 1 << 30)],  # a callable takes 1 MiB per write
)
def test_stderr_spray_costs_the_host_only_what_is_written(tmp_path: Path, mode: str, expected_written: int) -> None:
    wat = tmp_path / "spray.wat"
    wat.write_text(SPRAY)
    # The result goes to a file rather than a pipe the runner's 2 MB would fill (see
    # tests/test_instance.py::test_a_sync_call_leaves_no_uvloop_behind for what a pipe once did).
    result_file = tmp_path / "result.json"
    subprocess.run(
        [sys.executable, "-c", _SPRAY_RUNNER, str(wat), mode, str(result_file)],
        capture_output=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(result_file.read_text())
    memory = _spray_memory()
    assert result["written"] == expected_written
    assert result["grown"] < 64 << 20, f"host RSS grew {result['grown'] >> 20} MiB"
    assert result["tail"] == memory[-4096:].decode()  # what was written ends with the end of memory
    if mode == "callable":
        assert [bytes.fromhex(r) for r in result["received"]] == [memory]


def test_stderr_tail_keeps_the_end_of_what_was_written_not_of_what_was_offered() -> None:
    received: list[bytes] = []
    tail = StderrTail(CallbackOutput(received.append))
    written = tail.writev([memoryview(b"a" * CALLBACK_CHUNK), memoryview(b"b" * 10)])
    assert written == CALLBACK_CHUNK and received == [b"a" * CALLBACK_CHUNK]
    assert tail.tail == b"a" * StderrTail.LIMIT
    assert tail.writev([memoryview(b"xyz")]) == 3
    assert tail.tail == b"a" * (StderrTail.LIMIT - 3) + b"xyz"


def test_discarded_write_reports_at_most_what_fits_the_abi() -> None:
    """4 GiB named by iovecs (1 MiB held): a u32 cannot say 4 GiB, Linux's cap can."""
    views = [memoryview(bytearray(1 << 20))] * 4096
    assert NullStream().writev(views) == MAX_RW


# --- 7. a per-guest descriptor limit --------------------------------------------------------

# "open_all" opens /d/f.txt (fd 3 is /d) until an open fails and returns how many succeeded
# (the failing errno at 4); "open_one" tries once more and returns the errno;
# "close_from" closes fds [n, n + count).
OPENER = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "f.txt")
  (func $once (export "open_one") (result i32)
    (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 0)
                (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
  (func (export "open_all") (result i32) (local $n i32) (local $err i32)
    (block $done
      (loop $more
        (local.set $err (call $once))
        (br_if $done (local.get $err))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $more)))
    (i32.store (i32.const 4) (local.get $err))
    (local.get $n))
  (func (export "last_errno") (result i32) (i32.load (i32.const 4)))
  (func (export "close_from") (param $fd i32) (param $count i32) (result i32) (local $bad i32)
    (loop $next
      (local.set $bad (i32.or (local.get $bad) (call $close (local.get $fd))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (local.set $count (i32.sub (local.get $count) (i32.const 1)))
      (br_if $next (local.get $count)))
    (local.get $bad)))
"""


@pytest.mark.parametrize("limit", [64, None])
def test_guest_gets_mfile_at_its_descriptor_limit(tmp_path: Path, limit: int | None) -> None:
    (tmp_path / "f.txt").write_text("x")
    limits = Limits() if limit is None else Limits(max_fds=limit)
    host = Host(preopens=[Preopen("/d", tmp_path)], stdout=None, limits=limits)
    room = limits.max_fds - 4  # stdio and the preopen count too
    module = Module(OPENER.encode())
    with Instance(module, host) as warm:  # the module's memory image, the loop of the calls: not ours
        warm.call("last_errno")
    gc.collect()  # what earlier tests left for the collector is not counted as ours
    baseline = open_fds()
    with Instance(module, host) as first:
        first.call("last_errno")  # whatever running a call needs is in place before counting
        holding = open_fds()
        assert first.call("open_all") == room
        assert first.call("last_errno") == Errno.MFILE
        opened = open_fds() - holding
        assert len(opened) == room
        assert [first.call("open_one") for _ in range(5)] == [Errno.MFILE] * 5
        assert open_fds() - holding == opened  # a refused open leaves no host descriptor
        with Instance(module, host) as second:  # the limit is per guest
            assert second.call("open_all") == room
        assert first.call("close_from", 4, room) == 0
        assert open_fds() - holding == set()
        assert first.call("open_all") == room  # closed numbers are free again
    assert open_fds() - baseline == set()


COUNT_OPENS = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) ".")
  (func (export "_start") (local $n i32)
    (loop $more
      (if (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 0)
                               (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))
        (then (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $more))))
    (call $exit (local.get $n))))
"""


def test_cli_max_fds(tmp_path: Path) -> None:
    module = tmp_path / "count.wat"
    module.write_text(COUNT_OPENS)
    done = run_cli("run", "--max-fds", "10", "--dir", f"/d:{tmp_path}", module)
    assert (done.returncode, done.stderr) == (10 - 4, "")
    refused = run_cli("run", "--max-fds", "3", "--dir", f"/d:{tmp_path}", module)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == ["wasmhost: descriptor limit 3: stdio and preopens alone take 4"]
    assert run_cli("run", "--max-fds", "0", module).returncode == 2


def test_descriptor_limit_counts_preopens_and_is_validated(tmp_path: Path) -> None:
    from wasmhost import ConfigError

    with pytest.raises(ConfigError, match="descriptor limit: must be positive"):
        Limits(max_fds=0)
    with pytest.raises(ConfigError, match="descriptor limit 4: stdio and preopens alone take 5"):
        Host(preopens=[Preopen("/a", tmp_path), Preopen("/b", tmp_path)], limits=Limits(max_fds=4))


def test_path_open_at_the_limit_gets_mfile_and_holds_nothing(tmp_path: Path) -> None:
    fds = FdTable(limit=5)
    for _ in range(3):
        fds.add(NullStream())
    fds.add(Directory.open_preopen(str(tmp_path), "/d", read_only=False))
    h = Harness(fds)
    try:
        assert h.open(3, ".", base=R.FD_READDIR)[0] == Errno.SUCCESS
        before = open_fds()
        assert [h.open(3, ".", base=R.FD_READDIR)[0] for _ in range(3)] == [Errno.MFILE] * 3
        assert not open_fds() - before
    finally:
        fds.close_all()


def test_refused_descriptor_is_closed_not_leaked() -> None:
    """At the limit the table closes what it was given: callers (sock_open, sock_accept,
    path_open) need no cleanup of their own."""
    fds = FdTable(limit=2)
    fds.add(NullStream())
    fds.add(NullStream())
    sock = socket.socket()
    with pytest.raises(WasiError) as info:
        fds.add(Socket(sock))
    assert info.value.errno == Errno.MFILE
    assert sock.fileno() == -1
    fds.close(1)
    assert fds.add(NullStream()) == 1


def test_lowest_free_number_first() -> None:
    fds = FdTable()
    assert [fds.add(NullStream()) for _ in range(8)] == list(range(8))
    fds.close(5)
    fds.close(2)
    fds.renumber(6, 1)  # 6 moves onto 1: 6 is free
    assert [fds.add(NullStream()) for _ in range(4)] == [2, 5, 6, 8]
    fds.close_all()
    assert fds.add(NullStream()) == 0


def test_allocation_is_not_linear() -> None:
    """10,000 descriptors; the time is printed (no timed assertion): linear search took
    seconds, a heap of freed numbers takes milliseconds."""
    fds = FdTable(limit=20_000)
    start = time.perf_counter()
    numbers = [fds.add(NullStream()) for _ in range(10_000)]
    elapsed = time.perf_counter() - start
    print(f"10,000 descriptors allocated in {elapsed * 1e3:.1f} ms")
    assert numbers == list(range(10_000))


# --- 16. closing: errors are errnos, and every descriptor is closed -------------------------


def test_failing_close_is_an_errno_not_an_oserror(tmp_path: Path) -> None:
    fds = FdTable()
    desc = OsFile(os.open(tmp_path, os.O_RDONLY), FILE_RIGHTS)
    number = fds.add(desc)
    h = Harness(fds)
    os.close(desc.fd)  # the host resource is gone behind the table's back: close(2) fails
    assert h.errno("fd_close", number) == Errno.BADF
    assert h.errno("fd_close", number) == Errno.BADF  # and the number is gone either way


def test_close_all_closes_every_descriptor_despite_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = open_fds()
    fds = FdTable()
    descs = [OsFile(os.open(tmp_path, os.O_RDONLY), FILE_RIGHTS) for _ in range(3)]
    for desc in descs:
        fds.add(desc)
    os.close(descs[0].fd)
    with caplog.at_level(logging.WARNING, logger="wasmhost"):
        fds.close_all()
    assert not open_fds() - before
    assert "closing guest descriptor 0 failed" in caplog.text
