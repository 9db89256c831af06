"""Handing a non-Wasm container to runc or crun, as crun's Wasm handler does the other way round."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

#: Tried in this order; `WASMHOST_RUNTIME_DELEGATE` names another runc-compatible binary.
CANDIDATES = ("runc", "crun")


def find() -> str | None:
    """The runc-compatible binary to delegate to, or None."""
    chosen = os.environ.get("WASMHOST_RUNTIME_DELEGATE")
    for name in [chosen] if chosen else CANDIDATES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def command(binary: str, root: Path, argv: Sequence[str]) -> list[str]:
    """runc's argv for ours: the same arguments after our state root (a later `--root` in `argv`
    names the same directory), so runc keeps its state beside ours and later calls find it."""
    return [binary, "--root", str(root), *argv]


def run(binary: str, root: Path, argv: Sequence[str]) -> NoReturn:
    """Become runc (exec): its exit code, output and child processes are the engine's to see."""
    args = command(binary, root, argv)
    os.execv(args[0], args)
