"""What the in-process host-function targets share: a private loop and a scratch directory that
live as long as the process, a sandbox rebuilt for every input, and the process's fd count."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from tests.wasi.world import make_sandbox

#: Where the scratch directory goes unless TMPDIR says: rebuilding the sandbox for every input
#: costs a millisecond a directory on a disk, and nothing on tmpfs.
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None


class Scratch:
    """The per-process part of a target: the sandbox is rebuilt for every input, so that an input
    does the same thing whatever ran before it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.scratch = Path(tempfile.mkdtemp(prefix="wasmhost-fuzz-", dir=os.environ.get("TMPDIR") or TMPFS))
        atexit.register(self.close)

    def close(self) -> None:
        self.loop.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def sandbox(self) -> Path:
        root = self.scratch / "box"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir()
        return make_sandbox(root)


def open_fds() -> set[str]:
    """What each of the process's descriptors is (``5 -> socket:[1234]``): a descriptor an input
    left open is in the set after it and not before, even where its number was reused, and one
    that closed meanwhile (a transport of an earlier input, a file the test runner let go) is no
    leak."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            found.add(f"{name} -> {os.readlink(f'/proc/self/fd/{name}')}")
    return found
