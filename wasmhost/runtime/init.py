"""The container's process: `create` starts it, it prepares the guest, then waits for `start`.

Run as `python -m wasmhost.runtime.init`. It joins the bundle's network namespace first (before
any thread exists), compiles and instantiates the module, reports "ready" (or one error line)
on the sync pipe `create` waits on, then blocks opening `exec.fifo` for writing until `start`
opens it for reading, as runc's init does. Its stdio is the container's.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GuestTrap, WasmhostError
from . import namespaces
from .errors import RuntimeFailure
from .logfile import LogFile
from .spec import read_spec
from .state import FIFO

if TYPE_CHECKING:
    from ..instance import Instance

READY = "ready"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wasmhost.runtime.init")
    parser.add_argument("--sync-fd", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--log-format", default="text")
    ns = parser.parse_args(argv)
    LogFile(ns.log, ns.log_format).route()
    with os.fdopen(ns.sync_fd, "w") as sync:
        try:
            instance = _prepare(ns.bundle)
        except WasmhostError as exc:
            sync.write(str(exc).replace("\n", " ") + "\n")
            return 1
        sync.write(READY + "\n")
    _wait_for_start(ns.state / FIFO)
    return _run(instance)


def _prepare(bundle: Path) -> Instance:
    spec = read_spec(bundle)
    if spec.network is not None:
        try:
            namespaces.enter(spec.network)
        except OSError as exc:
            what = spec.network.path or "a new network namespace"
            raise RuntimeFailure(f"cannot enter {what}: {exc.strerror}") from None
    from ..instance import Instance  # after setns: nothing of the guest's may start in the old namespace
    from .guest import guest

    return Instance(*guest(bundle, spec))


def _wait_for_start(fifo: Path) -> None:
    """Block until `start` opens the FIFO; a signal before then ends this process by default."""
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def _run(instance: Instance) -> int:
    from .. import server

    try:
        with instance:
            code, sig = server.run(instance)
    except WasmhostError as exc:  # on the container's stderr, where its logs are read
        details = exc.details() if isinstance(exc, GuestTrap) else str(exc)
        print(f"wasmhost: {details}", file=sys.stderr, flush=True)
        return 1
    if sig is not None:  # die of the signal, as a native process would, so the engine sees it
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return code


if __name__ == "__main__":
    sys.exit(main())
