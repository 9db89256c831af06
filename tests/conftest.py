"""Shared fixtures: freshly built Rust guests, an isolated cache, CLI runner, served guests, fd counts."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from fuzz.scratch import open_fds as open_fds  # what tests compare to prove nothing leaks


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside: a timing test's lateness must not include a collection of
    the test process's whole heap (some 35 ms once every suite is imported)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


ROOT = Path(__file__).resolve().parent.parent
GUEST_OUT = ROOT / "rust-guests" / "out"


def _build_guests() -> None:
    """Build the Rust guests once if this checkout has none yet (CI builds them first)."""
    if not any(GUEST_OUT.glob("*.wasm")):
        subprocess.run(["bash", str(ROOT / "rust-guests" / "build.sh")], check=True)


@pytest.fixture(scope="session")
def guest() -> Iterator[Callable[[str], Path]]:
    """``guest("hello-world")`` -> path of that freshly built guest module."""
    _build_guests()

    def find(name: str) -> Path:
        path = GUEST_OUT / f"{name}.wasm"
        if not path.exists():
            pytest.fail(f"guest {name} was not built: run rust-guests/build.sh")
        return path

    yield find


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own compile cache: no test sees another's artifacts."""
    monkeypatch.setenv("WASMHOST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def run_cli(*args: str | os.PathLike[str], timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m wasmhost ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "wasmhost", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        **kwargs,  # type: ignore[arg-type]
    )


#: The guest's first listening socket, or where a wasi:http component is served.
_LISTENING = re.compile(r"(?:listening on (?:udp )?|serving wasi:http on http://)(\S+):(\d+)")
_WORKER_READY = re.compile(r"wasmhost\[(\d+)\]: .*(?:listening on|serving wasi:http on)")


@attrs.define
class Served:
    proc: subprocess.Popen[str]
    port: int
    log: list[str]
    matched: set[int] = attrs.field(factory=set)  # log lines a search already returned

    def read_log_until(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """The first stderr line matching ``pattern`` that no earlier search returned, waiting
        for it if needed (the log is kept in ``self.log``; lines from several processes, such
        as workers, may come in any order)."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for index, line in enumerate(self.log):
                if index not in self.matched and line.endswith("\n") and (found := compiled.search(line)):
                    self.matched.add(index)
                    return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _read_lines(self.proc, self.log, remaining):
                raise AssertionError(f"no {pattern!r} in serve output:\n" + "".join(self.log))

    def wait_for_workers(self, count: int, timeout: float = 10) -> None:
        """Until each of ``count`` workers has logged that it serves. Not a ``read_log_until``:
        the line the fixture took for the port may be any worker's."""
        deadline = time.monotonic() + timeout
        while True:
            found = {m[1] for line in self.log if line.endswith("\n") and (m := _WORKER_READY.search(line))}
            if len(found) >= count:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _read_lines(self.proc, self.log, remaining):
                raise AssertionError(f"{len(found)} of {count} workers serve:\n" + "".join(self.log))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds it took to exit)."""
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        elapsed = time.monotonic() - start
        assert self.proc.stderr is not None
        self.log.append(self.proc.stderr.read())
        return code, elapsed


def _read_lines(proc: subprocess.Popen[str], log: list[str], timeout: float) -> bool:
    """Append the next whole lines of ``proc``'s stderr to ``log``; False at EOF or timeout.

    Reads the raw descriptor, never a buffered file (whose buffer could hold lines that
    ``select`` cannot see); a partial line waits, without its newline, as ``log``'s last entry.
    """
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout
    pending = log.pop() if log and not log[-1].endswith("\n") else ""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    return False
                continue
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                return False
            *lines, pending = (pending + chunk).split("\n")
            if lines:
                log.extend(f"{line}\n" for line in lines)
                return True
        return False
    finally:
        if pending:
            log.append(pending)


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(guest: Callable[[str], Path]) -> Iterator[ServeFactory]:
    """``serve("http-hello", *flags, args=[...])``: serve a guest (or an ``oci://`` reference) on 127.0.0.1.

    ``name=None`` names no module (the demo, or ``--bundle DIR`` in the flags); ``args`` follow the module.

    Unless the flags map ports themselves, the guest's port 8080 is mapped to host port 0;
    the port the log names is used.
    Every server still running at the end of the test is stopped.
    """
    started: list[Served] = []

    def start(
        name: str | None, *flags: str, args: Sequence[str] = (), env: dict[str, str] | None = None, wait: bool = True
    ) -> Served:
        module = [] if name is None else [name if name.startswith("oci://") else str(guest(name))]
        ports = [] if "-p" in flags else ["-p", "0:8080"]
        command = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", *ports, *flags]
        command += [*module, *args]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        served = Served(proc, 0, [])
        started.append(served)
        if wait:
            served.port = int(served.read_log_until(_LISTENING.pattern).group(2))
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
        served.proc.wait(10)
        assert served.proc.stderr is not None
        served.proc.stderr.close()


GUEST_PORT = 18081  # a guest-side port, mapped to a host port the OS picks: never bound on the host


def serve_with_listen_argument(serve: ServeFactory, name: str | None, *flags: str, dash: bool) -> Served:
    """Serve http-hello given its listen address as argv[1]: ``[--] 127.0.0.1:GUEST_PORT``.

    Returns once the guest listens on GUEST_PORT (``-p 0:GUEST_PORT`` maps it): the argument arrived.
    """
    served = serve(name, "-p", f"0:{GUEST_PORT}", *flags, args=[*(["--"] if dash else []), f"127.0.0.1:{GUEST_PORT}"])
    listening = [line for line in served.log if _LISTENING.search(line)]
    assert listening and all(f"(guest port {GUEST_PORT})" in line for line in listening), "".join(served.log)
    return served


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
