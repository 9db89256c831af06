"""What the two baseline servers share: the guest's exact reply bytes, the CLI and the startup.

The bytes match ``rust-guests/guests/http-hello`` (checked at run time by ``benchmarks/serve.py``),
so the baselines and the guest put the same load on the loopback socket.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

import uvloop

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
_HEAD = b"HTTP/1.1 200 OK\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in HEADERS)
_REPLIES = {
    # (keep_alive, http10): like the guest, name the connection only when the default does not hold.
    (True, False): _HEAD + b"\r\n" + BODY,
    (True, True): _HEAD + b"connection: keep-alive\r\n\r\n" + BODY,
    (False, False): _HEAD + b"connection: close\r\n\r\n" + BODY,
    (False, True): _HEAD + b"connection: close\r\n\r\n" + BODY,
}


def reply(keep_alive: bool, http10: bool = False) -> bytes:
    """The guest's ``200 OK`` for ``GET /`` on a connection that stays open or not."""
    return _REPLIES[keep_alive, http10]


def serve(protocol_factory: Callable[[], asyncio.Protocol], description: str | None) -> None:
    """Parses ``--port``, serves on 127.0.0.1 with uvloop until SIGTERM or SIGINT, then exits 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=8080, help="TCP port; 0 lets the OS pick")
    uvloop.run(_serve(protocol_factory, parser.parse_args().port))


async def _serve(protocol_factory: Callable[[], asyncio.Protocol], port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(protocol_factory, "127.0.0.1", port)
    # The benchmark waits for this line to learn the OS-picked port.
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
