"""Progress counters: drawn on a real terminal (a pty), silent when piped."""

from __future__ import annotations

import io
import os
import select
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from tests.oci.conftest import Registry
from wasmhost.oci import Cache, build, pull, push
from wasmhost.oci.progress import Progress


@pytest.fixture
def terminal() -> Iterator[tuple[TextIO, int]]:
    """The slave side of a pty as a text stream, and the master fd to read what was drawn."""
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        yield tty, master
    os.close(master)


def _drawn(master: int) -> str:
    """Everything drawn so far: the pty hands it over in pieces, so read until it is drained."""
    drawn = b""
    while select.select([master], [], [], 0.2)[0]:
        drawn += os.read(master, 65536)
    return drawn.decode()


def test_counter_on_a_terminal(terminal: tuple[TextIO, int]) -> None:
    tty, master = terminal
    progress = Progress("pull 0123456789ab", 1_000_000, tty)
    progress.advance(500_000)
    progress.advance(500_000)
    progress.close()
    drawn = _drawn(master)
    assert "\rpull 0123456789ab 0.5 MB / 1.0 MB (50%)" in drawn
    assert "\rpull 0123456789ab 1.0 MB / 1.0 MB (100%)" in drawn
    assert drawn.endswith("\n")


def test_quiet_when_piped_small_or_disabled() -> None:
    piped = io.StringIO()
    for stream, total in ((piped, 10_000_000), (None, 10_000_000)):
        progress = Progress("push x", total, stream)
        progress.advance(total)
        progress.close()
    assert piped.getvalue() == ""


def _big_module(module: bytes) -> bytes:
    """`module` plus a 300 kB custom section, so transfers are large enough to be drawn."""
    payload = b"\x01x" + bytes(300_000)
    size, leb = len(payload), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        leb.append(byte | (0x80 if size else 0))
        if not size:
            break
    return module + b"\x00" + bytes(leb) + payload


def test_push_and_pull_draw_on_a_terminal(
    module: bytes, registry: Registry, tmp: Path, terminal: tuple[TextIO, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tty, master = terminal
    big = _big_module(module)
    built = build(big, f"{registry.host}/progress/app:v1", "artifact")
    monkeypatch.setattr(sys, "stderr", tty)
    push(built)
    pulled = pull(built.reference, cache=Cache(tmp))
    tty.flush()
    drawn = _drawn(master)
    short = pulled.digest[7:19]
    assert f"push {short}" in drawn and f"pull {short}" in drawn and "(100%)" in drawn
    assert pulled.path.read_bytes() == big
