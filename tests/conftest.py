"""Shared fixtures: freshly built Rust guests, an isolated cache, CLI runner, served guests, fd counts."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

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


def open_fds() -> set[int]:
    """The descriptors this process holds now (to prove nothing leaks)."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


_LISTENING = re.compile(r"listening on (?:udp )?(\S+):(\d+)")


@attrs.define
class Served:
    proc: subprocess.Popen[str]
    port: int
    log: list[str]

    def read_log_until(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """Wait for a stderr line matching ``pattern`` (the log is kept in ``self.log``)."""
        found = _read_until(self.proc, re.compile(pattern), self.log, timeout)
        if found is None:
            raise AssertionError(f"no {pattern!r} in serve output:\n" + "".join(self.log))
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds it took to exit)."""
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        elapsed = time.monotonic() - start
        assert self.proc.stderr is not None
        self.log.append(self.proc.stderr.read())
        return code, elapsed


def _read_until(
    proc: subprocess.Popen[str], pattern: re.Pattern[str], log: list[str], timeout: float
) -> re.Match[str] | None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            line = proc.stderr.readline()
            if not line:
                return None
            log.append(line)
            found = pattern.search(line)
            if found:
                return found
        elif proc.poll() is not None:
            return None
    return None


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(guest: Callable[[str], Path]) -> Iterator[ServeFactory]:
    """``serve("http-hello", *flags)``: serve a guest (or an ``oci://`` reference) on 127.0.0.1.

    Unless the flags map ports themselves, the guest's port 8080 is mapped to host port 0;
    the port the log names is used.
    Every server still running at the end of the test is stopped.
    """
    started: list[Served] = []

    def start(name: str, *flags: str, env: dict[str, str] | None = None, wait: bool = True) -> Served:
        module = name if name.startswith("oci://") else str(guest(name))
        ports = [] if "-p" in flags else ["-p", "0:8080"]
        command = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", *ports, *flags]
        command.append(module)
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


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
