"""Running a guest as a process's main job: start it, stop it on SIGINT/SIGTERM, report why it ended."""

from __future__ import annotations

import asyncio
import signal
from importlib import resources
from pathlib import Path

from .errors import Interrupted
from .instance import Instance
from .net import loop

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def demo_module() -> Path:
    """The bundled ``http-hello`` guest (so ``pip install`` users need no Rust)."""
    return Path(str(resources.files("wasmhost") / "_demo" / "http-hello.wasm"))


def run(instance: Instance) -> tuple[int, int | None]:
    """Run the guest on an event loop until it ends or a signal stops it.

    Returns ``(exit code, signal)``; the signal is None when the guest ended by itself.
    """
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        instance.stop()

    async def main() -> int:
        running = asyncio.get_running_loop()
        for sig in SIGNALS:
            running.add_signal_handler(sig, on_signal, sig)
        try:
            return await instance.run_async()
        finally:
            for sig in SIGNALS:
                running.remove_signal_handler(sig)

    try:
        return loop.run(main()), None
    except Interrupted:
        if received:
            return 0, received[0]
        raise
