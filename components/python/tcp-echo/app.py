"""wasi:http guest that serves one TCP connection through Python's ``socket`` module (wasi-libc's
wasi:sockets): it binds ``x-bind`` (default 0.0.0.0:0), listens, answers at once with the address
it got (``x-local``), echoes one connection until its end, then says how many bytes it echoed.
A failed bind or listen is a 502 naming the errno."""

import errno
import socket

from guest_http import finish, respond, start_response, write_all
from wit_world import exports
from wit_world.imports.types import IncomingRequest, ResponseOutparam


def address(text: str) -> tuple[int, tuple[str, int]]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        family, where = address((request.headers().get("x-bind") or [b"0.0.0.0:0"])[0].decode())
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.bind(where)
            listener.listen(1)
        except OSError as exc:
            listener.close()
            respond(response_out, 502, "text/plain", errno.errorcode.get(exc.errno or 0, str(exc)).encode())
            return
        host, port = listener.getsockname()[:2]
        body, stream = start_response(response_out, 200, [("x-local", f"{host}:{port}".encode())])
        conn, peer = listener.accept()
        echoed = 0
        while data := conn.recv(65536):
            conn.sendall(data)
            echoed += len(data)
        conn.close()
        listener.close()
        write_all(stream, f"echoed {echoed} bytes from {peer[0]}\n".encode())
        finish(body, stream)
