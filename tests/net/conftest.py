"""A ``wasmhost serve`` process on an OS-picked port, stopped and checked after each test."""

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

from tests.conftest import ROOT

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
    """``serve("http-hello", *flags)``: serve a guest on 127.0.0.1 and an OS-picked port.

    Unless the flags map ports themselves, the guest's port 8080 is mapped to host port 0;
    the port the log names is used.
    Every server still running at the end of the test is stopped.
    """
    started: list[Served] = []

    def start(name: str, *flags: str, env: dict[str, str] | None = None, wait: bool = True) -> Served:
        ports = [] if "-p" in flags else ["-p", "0:8080"]
        command = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", *ports, *flags]
        command.append(str(guest(name)))
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
