"""wasi:sockets 0.2 under wasmhost's network policy (``Network``): TCP connections go only
where ``outbound`` allows (``--allow-outbound``), and a name is resolved only if a rule was
made from it, so by default both are refused with ``access-denied``, as in preview1.

Connected sockets are asyncio streams on the guest's loop: the input stream reads ahead at
most one chunk (``streams.Feed``), the output stream is a bounded ``streams.Pipe`` drained to
the socket, so a slow peer makes the guest wait. Binding, listening and UDP are not provided
(``not-supported``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from .._native.component import Err, Ok
from .context import Wasi
from .io import subscribe
from .poll import TaskReadiness
from .streams import Feed, Pipe

NETWORK = "wasi:sockets/network@0.2.0"
TCP = "wasi:sockets/tcp@0.2.0"
UDP = "wasi:sockets/udp@0.2.0"
LOOKUP = "wasi:sockets/ip-name-lookup@0.2.0"
RESOURCES = [
    (NETWORK, "network"), (TCP, "tcp-socket"), (UDP, "udp-socket"), (UDP, "incoming-datagram-stream"),
    (UDP, "outgoing-datagram-stream"), (LOOKUP, "resolve-address-stream"),
]  # fmt: skip
#: The error case of socket operations wasmhost does not provide.
REFUSAL = "not-supported"
_DENIED = "access-denied"
_READ = 65536


class SocketError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class InstanceNetwork:
    """The guest's handle on the network; what it may do is the host's ``Network`` policy."""


def _address(value: Any) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """An ``ip-socket-address`` (as lifted) -> (address, port)."""
    case, (port, *rest) = value
    if case == "ipv4":
        return ipaddress.IPv4Address(bytes(rest[0])), port
    words = rest[1]
    return ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words)), port


def _socket_address(address: str, port: int) -> Any:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return ("ipv4", (port, tuple(ip.packed)))
    words = tuple(int.from_bytes(ip.packed[i : i + 2], "big") for i in range(0, 16, 2))
    return ("ipv6", (port, 0, words, 0))


def _ip_address(address: str) -> Any:
    case, record = _socket_address(address, 0)
    return (case, record[1] if case == "ipv4" else record[2])


def _error(exc: BaseException) -> str:
    if isinstance(exc, SocketError):
        return exc.code
    if isinstance(exc, ConnectionRefusedError):
        return "connection-refused"
    if isinstance(exc, ConnectionResetError):
        return "connection-reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return "remote-unreachable"
    return "unknown"


class TcpSocket:
    """A client TCP socket: created, connecting (``task``), then connected (``streams``)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.task: asyncio.Task[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pump: asyncio.Task[None] | None = None
        self.outgoing: Pipe | None = None

    def ready(self) -> bool:
        return self.task is None or self.task.done()

    async def wait(self) -> None:
        if self.task is not None:
            await asyncio.wait([self.task])

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.pump is not None:
            self.pump.cancel()
        if self.writer is not None:
            self.writer.close()


async def _drain(pipe: Pipe, writer: asyncio.StreamWriter) -> None:
    """Send what the guest writes, waiting on the socket's own buffer (backpressure)."""
    try:
        while (chunk := await pipe.get()) is not None:
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pipe.break_()
    else:
        with contextlib.suppress(OSError):
            writer.write_eof()


class Lookup(TaskReadiness):
    """A name being resolved; ``resolve-next-address`` hands out its addresses one by one."""

    def __init__(self, task: asyncio.Task[list[str]]) -> None:
        super().__init__(task)
        self.addresses: list[str] | None = None


# --- functions --------------------------------------------------------------------------------


def instance_network(wasi: Wasi) -> int:
    return wasi.table.push(InstanceNetwork())


def create_tcp_socket(wasi: Wasi, family: str) -> Ok | Err:
    return Ok(wasi.table.push(TcpSocket(family)))


def refuse(_wasi: Wasi, *_args: Any) -> Err:
    return Err(REFUSAL)


def start_connect(wasi: Wasi, rep: int, _network: int, remote: Any) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    if sock.task is not None:
        return Err("invalid-state")
    address, port = _address(remote)
    if (address.version == 4) != (sock.family == "ipv4") or port == 0 or address.is_unspecified:
        return Err("invalid-argument")
    if not wasi.config.network.allows_outbound(address, port):
        return Err(_DENIED)
    sock.task = asyncio.ensure_future(asyncio.open_connection(str(address), port))
    return Ok(None)


def finish_connect(wasi: Wasi, rep: int) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    if sock.task is None or sock.writer is not None:
        return Err("not-in-progress")
    if not sock.task.done():
        return Err("would-block")
    if sock.task.cancelled() or sock.task.exception() is not None:
        exc = sock.task.exception() if not sock.task.cancelled() else None
        return Err(_error(exc) if exc is not None else "unknown")
    reader, writer = sock.task.result()
    if wasi.config.network.nodelay:
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.writer, sock.outgoing = writer, Pipe()
    sock.pump = asyncio.ensure_future(_drain(sock.outgoing, writer))
    incoming = Feed(lambda: reader.read(_READ))
    return Ok((wasi.table.push(incoming), wasi.table.push(sock.outgoing)))


def _peer(wasi: Wasi, rep: int, which: str) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    if sock.writer is None:
        return Err("invalid-state")
    name = sock.writer.get_extra_info(which)
    return Ok(_socket_address(name[0], name[1]))


def local_address(wasi: Wasi, rep: int) -> Ok | Err:
    return _peer(wasi, rep, "sockname")


def remote_address(wasi: Wasi, rep: int) -> Ok | Err:
    return _peer(wasi, rep, "peername")


def is_listening(_wasi: Wasi, _rep: int) -> bool:
    return False


def address_family(wasi: Wasi, rep: int) -> str:
    return wasi.table.get(rep, TcpSocket).family


def tcp_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, TcpSocket)


def shutdown(wasi: Wasi, rep: int, how: str) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    if sock.outgoing is None:
        return Err("invalid-state")
    if how in ("send", "both"):
        sock.outgoing.finish()
    return Ok(None)


def resolve_addresses(wasi: Wasi, _network: int, name: str) -> Ok | Err:
    try:
        literal = ipaddress.ip_address(name)
    except ValueError:
        literal = None
    if literal is None and not wasi.config.network.allows_lookup(name):
        return Err(_DENIED)

    async def lookup() -> list[str]:
        if literal is not None:
            return [str(literal)]
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    return Ok(wasi.table.push(Lookup(asyncio.ensure_future(lookup()))))


def resolve_next_address(wasi: Wasi, rep: int) -> Ok | Err:
    lookup = wasi.table.get(rep, Lookup)
    if lookup.addresses is None:
        if not lookup.task.done():
            return Err("would-block")
        if lookup.task.cancelled() or lookup.task.exception() is not None:
            return Err("name-unresolvable")
        lookup.addresses = lookup.task.result()
    return Ok(_ip_address(lookup.addresses.pop(0)) if lookup.addresses else None)


def lookup_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, Lookup)


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    ("wasi:sockets/instance-network@0.2.0", "instance-network"): instance_network,
    ("wasi:sockets/tcp-create-socket@0.2.0", "create-tcp-socket"): create_tcp_socket,
    ("wasi:sockets/udp-create-socket@0.2.0", "create-udp-socket"): refuse,
    (TCP, "[method]tcp-socket.start-connect"): start_connect,
    (TCP, "[method]tcp-socket.finish-connect"): finish_connect,
    (TCP, "[method]tcp-socket.local-address"): local_address,
    (TCP, "[method]tcp-socket.remote-address"): remote_address,
    (TCP, "[method]tcp-socket.is-listening"): is_listening,
    (TCP, "[method]tcp-socket.address-family"): address_family,
    (TCP, "[method]tcp-socket.subscribe"): tcp_subscribe,
    (TCP, "[method]tcp-socket.shutdown"): shutdown,
    (LOOKUP, "resolve-addresses"): resolve_addresses,
    (LOOKUP, "[method]resolve-address-stream.resolve-next-address"): resolve_next_address,
    (LOOKUP, "[method]resolve-address-stream.subscribe"): lookup_subscribe,
}
