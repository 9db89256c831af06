"""wasi:http guest that uses UDP through Python's ``socket`` module (wasi-libc's wasi:sockets).

Without ``x-send-to`` it binds ``x-bind`` (default 0.0.0.0:0), answers at once with the address it
got (``x-local``), sends the first datagram it receives back to its sender, and says so. With
``x-send-to: HOST:PORT`` it sends ``x-data`` there (from ``x-bind`` if given, else from where the
send binds it) and says from where. A failed bind or send is a 502 naming the errno.
"""

import errno
import socket

from guest_http import finish, respond, start_response, write_all
from wit_world import exports
from wit_world.imports.types import IncomingRequest, ResponseOutparam


def address(text: str) -> tuple[int, tuple[str, int]]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


def header(request: IncomingRequest, name: str) -> str | None:
    values = request.headers().get(name)
    return values[0].decode() if values else None


def local(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        bind, target = header(request, "x-bind"), header(request, "x-send-to")
        sock = socket.socket(address(target or bind or "0.0.0.0:0")[0], socket.SOCK_DGRAM)
        try:
            if bind is not None or target is None:
                sock.bind(address(bind or "0.0.0.0:0")[1])
            if target is not None:
                sent = sock.sendto((header(request, "x-data") or "").encode(), address(target)[1])
        except OSError as exc:
            sock.close()
            respond(response_out, 502, "text/plain", errno.errorcode.get(exc.errno or 0, str(exc)).encode())
            return
        with sock:
            if target is not None:
                respond(response_out, 200, "text/plain", f"sent {sent} bytes from {local(sock)}\n".encode())
                return
            body, stream = start_response(response_out, 200, [("x-local", local(sock).encode())])
            data, peer = sock.recvfrom(65536)
            sock.sendto(data, peer)
            write_all(stream, f"echoed {len(data)} bytes to {peer[0]}:{peer[1]}\n".encode())
            finish(body, stream)
