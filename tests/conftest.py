"""Shared fixtures: freshly built Rust guests, an isolated compile cache, CLI runner, fd counts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUEST_OUT = ROOT / "rust-guests" / "out"


def _build_guests() -> None:
    """Build the Rust guests once if this checkout has none yet (CI builds them first)."""
    if not any(GUEST_OUT.glob("*.wasm")):
        subprocess.run(["bash", str(ROOT / "rust-guests" / "build.sh")], check=True)


@pytest.fixture(scope="session")
def guest() -> Iterator[object]:
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
