"""``WASMHOST_LOOP`` picks the event loop servers run on: uvloop by default, asyncio's own on request."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
import uvloop

from tests.conftest import ServeFactory, run_cli
from wasmhost.errors import ConfigError
from wasmhost.net.loop import VARIABLE, new_loop


@pytest.mark.parametrize(("kind", "is_uvloop"), [("", True), ("auto", True), ("uvloop", True), ("asyncio", False)])
def test_the_variable_names_the_loop(monkeypatch: pytest.MonkeyPatch, kind: str, is_uvloop: bool) -> None:
    monkeypatch.setenv(VARIABLE, kind)
    loop = new_loop()
    try:
        assert isinstance(loop, uvloop.Loop) is is_uvloop
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_an_unknown_loop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "trio")
    with pytest.raises(ConfigError, match="WASMHOST_LOOP=trio: expected one of auto, uvloop, asyncio"):
        new_loop()


def test_the_cli_refuses_an_unknown_loop_in_one_line(guest: Path) -> None:
    done = run_cli("serve", "--host", "127.0.0.1", "-p", "0:8080", guest("http-hello"),
                   env={**os.environ, VARIABLE: "trio"},
                   timeout=30)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["wasmhost: WASMHOST_LOOP=trio: expected one of auto, uvloop, asyncio"]


@pytest.mark.parametrize(("kind", "uvloop_loaded"), [("asyncio", False), ("auto", True)])
def test_a_served_guest_answers_on_the_chosen_loop(serve: ServeFactory, kind: str, uvloop_loaded: bool) -> None:
    server = serve("http-hello", env={VARIABLE: kind})
    done = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{server.port}/"], capture_output=True, text=True,
                          timeout=10)  # fmt: skip
    assert done.stdout == "Hello, World!"
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert ("uvloop" in maps) is uvloop_loaded  # asyncio's loop never imports uvloop at all
