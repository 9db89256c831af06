"""Fuzz target: the socket-guest pass-through, ``python -m wasmhost serve`` of the http-hello
guest, fed arbitrary bytes over a real connection.

An input is a header byte and what the client sends:

    byte 0 bits 0-5   seed of the chunk sizes (as in ``http_protocol``; 0: one write)
    byte 0 bit 6      reset the connection after sending (SO_LINGER 0) instead of half-closing
    the rest          the client's bytes

After each input the server must still be running and answer a normal request. The server
runs in another process, where atheris sees no coverage; as a stand-in, h11 (instrumented)
parses what was sent and what came back, so inputs that parse or are answered differently
count as new and the corpus grows.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import struct
import subprocess
import sys
import time

import h11

from tests.conftest import _LISTENING, GUEST_OUT, ROOT, Served

from .http_protocol import chunks

_READ_FOR = 0.5  # seconds to read an answer to hostile bytes before giving up on it
_served: Served | None = None
_port: int | None = None


def attach(port: int) -> None:
    """Fuzz the server already listening on ``port`` (the suite's, started by its fixture)."""
    global _port
    _port = port


def _start() -> int:
    """Serve http-hello on 127.0.0.1, port 0; stopped when this process exits."""
    global _served
    command = [sys.executable, "-m", "wasmhost", "serve", "--host", "127.0.0.1", "-p", "0:8080"]
    proc = subprocess.Popen(
        [*command, str(GUEST_OUT / "http-hello.wasm")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    _served = Served(proc, 0, [])
    atexit.register(_stop)
    return int(_served.read_log_until(_LISTENING.pattern).group(2))


def _stop() -> None:
    if _served is not None and _served.proc.poll() is None:
        _served.stop()


def _feedback(sent: bytes, answer: bytes) -> None:
    """Parse the request bytes as a server would and the answer as a client would: only for
    the coverage it gives libFuzzer (a parse error here is no finding)."""
    server, client = h11.Connection(h11.SERVER), h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "fuzz")]))
    client.send(h11.EndOfMessage())
    for conn, data in ((server, sent), (client, answer)):
        conn.receive_data(data)
        with contextlib.suppress(h11.ProtocolError):
            for _ in range(len(data) + 8):  # each event consumes bytes; a bound in case one repeats
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    break


def _drain(conn: socket.socket) -> bytes:
    """What the server answers until it closes, or for ``_READ_FOR`` seconds."""
    got = bytearray()
    deadline = time.monotonic() + _READ_FOR
    with contextlib.suppress(OSError):
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            data = conn.recv(65536)
            if not data:
                break
            got += data
    return bytes(got)


def answers_normally(port: int) -> bytes:
    """A plain GET on a new connection; returns the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)
        response = bytearray()
        while data := conn.recv(65536):
            response += data
    return bytes(response)


def one_input(data: bytes) -> None:
    global _port
    if not data:
        return
    if _port is None:
        _port = _start()
    answer = b""
    # The server may close on garbage before everything is sent.
    with socket.create_connection(("127.0.0.1", _port), timeout=10) as conn, contextlib.suppress(OSError):
        for piece in chunks(data[0] & 0x3F, data[1:]):
            conn.sendall(piece)
        if data[0] & 0x40:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.shutdown(socket.SHUT_WR)
            answer = _drain(conn)
    _feedback(data[1:], answer)
    assert _served is None or _served.proc.poll() is None, "the server exited:\n" + "".join(_served.log)
    response = answers_normally(_port)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"Hello, World!"), response


def seeds() -> dict[str, bytes]:
    """The hostile requests of ``http_protocol``, whole and in pieces, and one reset mid-request."""
    from .http_protocol import HOSTILE

    out = {f"{name}-whole": b"\x00" + raw for name, raw in HOSTILE.items()}
    out |= {f"{name}-pieces": b"\x07" + raw for name, raw in HOSTILE.items()}
    out["reset-mid-request"] = b"\x40GET / HTTP/1.1\r\nHost: fu"
    return out
