"""wasi:sockets 0.2 under wasmhost's network policy (``Network``), by preview1's rules
(docs/guide/sockets.md):

- A bind goes where ``--host`` and ``-p`` put it (``Network.bind_target``): under
  ``--host 127.0.0.1 -p 0:8080`` a guest binding 0.0.0.0:8080 is bound to 127.0.0.1 on a port the
  OS picks, and ``local-address`` still says 8080. An unbound socket that connects is bound to
  ``--host`` first. A socket keeps its family (wasi-libc takes no address of the other), so
  where ``--host`` is of the other family it cannot bind (``address-not-bindable``), where
  preview1 re-creates the socket in that family.
- TCP connections and UDP datagrams go only where ``outbound`` allows (``--allow-outbound``); a
  UDP socket may always answer the peers it received from. A name is resolved only if a rule was
  made from it. Anything else is ``access-denied``.

Sockets are non-blocking host sockets on the guest's loop. A connected TCP socket's input stream
reads ahead at most one chunk (``streams.Feed``) and its output stream is a bounded
``streams.Pipe`` drained to the socket, so a slow peer makes the guest wait. The pollables of a
listener and of UDP streams wait for the host socket's own readiness. Failures are the
``error-code`` cases of Linux's errnos. Socket options (keep-alive, hop limit, buffer sizes)
are the kernel's: a value set before the host socket exists is applied when it is made, and an
accepted connection gets its listener's, as the WIT asks (Linux copies most of them itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import select
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

from .._native.component import Err, Ok
from ..net.policy import IPAddress, Network
from .context import Wasi
from .io import subscribe
from .poll import AlwaysReady, TaskReadiness
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
_DATAGRAM = 65536  # larger than any UDP payload
_SEND_BATCH = 64  # datagrams one check-send permits while the socket is writable
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

log = logging.getLogger("wasmhost")

#: Linux's errnos as wasi:sockets error codes.
_ERRNOS = {
    errno.EACCES: _DENIED, errno.EPERM: _DENIED, errno.EADDRINUSE: "address-in-use",
    errno.EADDRNOTAVAIL: "address-not-bindable", errno.EAGAIN: "would-block", errno.EINVAL: "invalid-argument",
    errno.EAFNOSUPPORT: "invalid-argument", errno.ECONNREFUSED: "connection-refused",
    errno.ECONNRESET: "connection-reset", errno.ECONNABORTED: "connection-aborted", errno.ETIMEDOUT: "timeout",
    errno.EMSGSIZE: "datagram-too-large", errno.EMFILE: "new-socket-limit", errno.ENFILE: "new-socket-limit",
    errno.ENOMEM: "out-of-memory", errno.ENOBUFS: "out-of-memory", errno.EHOSTUNREACH: "remote-unreachable",
    errno.ENETUNREACH: "remote-unreachable", errno.ENETDOWN: "remote-unreachable",
    errno.EHOSTDOWN: "remote-unreachable", errno.ENOTCONN: "invalid-state",
}  # fmt: skip


class SocketError(Exception):
    """A socket operation failed with this ``error-code`` case."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class InstanceNetwork:
    """The guest's handle on the network; what it may do is the host's ``Network`` policy."""


def _code(exc: BaseException, unmapped: str = "unknown") -> str:
    """The error code of a failure: its own, else its errno's (``unmapped`` if it has none we map)."""
    if isinstance(exc, SocketError):
        return exc.code
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return _ERRNOS.get(exc.errno or 0, unmapped)
    return "unknown"


def _outcome(op: Callable[[], Any]) -> Ok | Err:
    """``Ok`` of what a socket operation returns, or ``Err`` of the code it failed with."""
    try:
        return Ok(op())
    except (SocketError, OSError) as exc:
        return Err(_code(exc))


# --- addresses (sans-I/O) ---------------------------------------------------------------------


def _address(value: Any) -> tuple[IPAddress, int]:
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


def _checked(family: str, value: Any, *, peer: bool, unicast: bool) -> tuple[IPAddress, int]:
    """The guest's ``ip-socket-address``, or ``invalid-argument`` where Linux says EINVAL or
    EAFNOSUPPORT: another family, IPv4-mapped IPv6, multicast (TCP), and for a peer the
    unspecified address or port 0."""
    ip, port = _address(value)
    mapped = isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
    if (ip.version == 4) != (family == "ipv4") or mapped or (unicast and ip.is_multicast):
        raise SocketError("invalid-argument")
    if peer and (ip.is_unspecified or port == 0):
        raise SocketError("invalid-argument")
    return ip, port


def _show(ip: object, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


# --- socket options (sans-I/O) -----------------------------------------------------------------

_NS = 1_000_000_000
_C_INT_MAX = 0x7FFF_FFFF


def _positive(limit: int) -> Callable[[int], int]:
    """A setter's value as the kernel takes it: 0 is ``invalid-argument`` (as the WIT says), any
    other value is clamped to ``limit`` (where Linux would say EINVAL)."""

    def convert(value: int) -> int:
        if value == 0:
            raise SocketError("invalid-argument")
        return min(value, limit)

    return convert


def _seconds(limit: int) -> Callable[[int], int]:
    """A duration in nanoseconds as whole seconds (rounded up), for the keep-alive timers."""
    clamp = _positive(limit)
    return lambda ns: clamp(-(-ns // _NS))


class _Option(NamedTuple):
    """A wasi:sockets option: its (level, name) on IPv4 and IPv6 sockets, the setter's value as the
    kernel takes it, and the kernel's value as the getter returns it."""

    v4: tuple[int, int]
    v6: tuple[int, int]
    to_host: Callable[[int], int]
    from_host: Callable[[int], Any]

    def at(self, family: str) -> tuple[int, int]:
        """(level, name) for a socket of ``family`` ("ipv4" or "ipv6")."""
        return self.v4 if family == "ipv4" else self.v6


def _same(level: int, name: int, to_host: Callable[[int], int], from_host: Callable[[int], Any] = int) -> _Option:
    return _Option((level, name), (level, name), to_host, from_host)


_OPTIONS = {
    "keep-alive-enabled": _same(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int, bool),
    "keep-alive-idle-time": _same(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _seconds(32767), lambda s: s * _NS),
    "keep-alive-interval": _same(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _seconds(32767), lambda s: s * _NS),
    "keep-alive-count": _same(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _positive(127)),
    "hop-limit": _Option((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS),
                         _positive(255), int),
    "receive-buffer-size": _same(socket.SOL_SOCKET, socket.SO_RCVBUF, _positive(_C_INT_MAX)),
    "send-buffer-size": _same(socket.SOL_SOCKET, socket.SO_SNDBUF, _positive(_C_INT_MAX)),
}  # fmt: skip


# --- host sockets -----------------------------------------------------------------------------


_FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


def _apply(sock: socket.socket, options: dict[tuple[int, int], int]) -> None:
    for (level, key), value in options.items():
        sock.setsockopt(level, key, value)


def _bound(
    network: Network, kind: int, ip: IPAddress, port: int, connecting: bool = False,
    options: dict[tuple[int, int], int] | None = None,
) -> tuple[socket.socket, int | None]:  # fmt: skip
    """A host socket with the guest's ``options``, bound where the policy puts the guest's
    ``bind(ip, port)``, and the guest's port when ``-p`` remapped it. One that is ``connecting``
    unbound (the unspecified address, port 0) is bound only where ``--host`` says (the port
    chosen at connect time), else left to the kernel, as in preview1."""
    host, host_port = network.bind_target(ip, port)
    kernels = connecting and host_port == 0 and ipaddress.ip_address(host).is_unspecified
    if not kernels and ipaddress.ip_address(host).version != ip.version:
        raise SocketError("address-not-bindable")
    sock = socket.socket(socket.AF_INET if ip.version == 4 else socket.AF_INET6, kind)
    try:
        sock.setblocking(False)
        _apply(sock, options or {})
        if connecting:  # outgoing connections share ephemeral ports
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        elif kind == socket.SOCK_STREAM:  # a restarted server rebinds its port despite TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if not kernels:
            if network.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, host_port))
    except OSError:
        sock.close()
        raise
    return sock, port if port and host_port != port else None


class _Watch:
    """Whether a host socket is readable (or writable) now, and a wait for it on the loop. A wait
    is unregistered as it ends, and again before the socket closes (libuv aborts on a closed fd)."""

    def __init__(self, sock: socket.socket, write: bool) -> None:
        self.sock = sock
        self.write = write
        self._loop: asyncio.AbstractEventLoop | None = None

    def ready(self) -> bool:
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT if self.write else select.POLLIN)
        return bool(poller.poll(0))

    async def wait(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        done = loop.create_future()
        (loop.add_writer if self.write else loop.add_reader)(self.sock, _settle, done)
        try:
            await done
        finally:
            self.close()

    def close(self) -> None:
        if self._loop is not None:
            (self._loop.remove_writer if self.write else self._loop.remove_reader)(self.sock)
            self._loop = None


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Socket(AlwaysReady):
    """What TCP and UDP sockets share: a family, a host socket once bound, and the bind."""

    kind = socket.SOCK_STREAM

    def __init__(self, family: str) -> None:
        self.family = family
        self.sock: socket.socket | None = None
        self.state = "unbound"  # then bind-started, bound; TCP goes on (``TcpSocket``)
        self.guest_port: int | None = None  # the port the guest bound, when -p remapped it
        #: Options the guest set, as the kernel takes them: applied to the host socket once made.
        self.options: dict[tuple[int, int], int] = {}

    def bind(self, network: Network, local: Any) -> None:
        if self.state != "unbound":
            raise SocketError("invalid-state")
        ip, port = _checked(self.family, local, peer=False, unicast=self.kind == socket.SOCK_STREAM)
        self.sock, self.guest_port = _bound(network, self.kind, ip, port, options=self.options)
        self.state = "bind-started"

    def get_option(self, name: str) -> Any:
        """What the kernel says; before the host socket exists, what it will say once made."""
        option = _OPTIONS[name]
        level, key = option.at(self.family)
        if self.sock is not None:
            return option.from_host(self.sock.getsockopt(level, key))
        with socket.socket(_FAMILIES[self.family], self.kind) as probe:
            _apply(probe, self.options)
            return option.from_host(probe.getsockopt(level, key))

    def set_option(self, name: str, value: int) -> None:
        option = _OPTIONS[name]
        level, key = option.at(self.family)
        host = option.to_host(value)
        if self.sock is not None:
            self.sock.setsockopt(level, key, host)
        self.options[level, key] = host

    def finish(self, started: str, done: str) -> Ok | Err:
        """End a two-step operation (bind, listen), which took effect when it started."""
        if self.state != started:
            return Err("not-in-progress")
        self.state = done
        return Ok(None)

    def local_address(self) -> Any:
        if self.sock is None or self.state in ("unbound", "bind-started"):
            raise SocketError("invalid-state")
        host, port = self.sock.getsockname()[:2]
        return _socket_address(host, self.guest_port or port)

    def remote_address(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


# --- TCP ----------------------------------------------------------------------------------------


class TcpSocket(_Socket):
    """A TCP socket through the states of wasi:sockets/tcp: unbound, bound, listening (``incoming``
    watches for connections), or connecting (``task``) and then connected (``writer``)."""

    def __init__(self, family: str) -> None:
        super().__init__(family)
        self.backlog = 128
        self.incoming: _Watch | None = None
        self.task: asyncio.Task[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pump: asyncio.Task[None] | None = None
        self.outgoing: Pipe | None = None

    def listen(self) -> None:
        if self.state != "bound" or self.sock is None:
            raise SocketError("invalid-state")
        self.sock.listen(self.backlog)
        self.incoming = _Watch(self.sock, write=False)
        self.state = "listen-started"
        host, port = self.sock.getsockname()[:2]
        guest = f" (guest port {self.guest_port})" if self.guest_port else ""
        log.info("wasi:sockets: listening on %s%s", _show(host, port), guest)

    def resize(self, backlog: int) -> None:
        """Set the listen backlog; Linux takes a new one on a socket already listening."""
        self.backlog = min(backlog, 4096)
        if self.incoming is not None and self.sock is not None:
            self.sock.listen(self.backlog)

    def connect(self, network: Network, remote: Any) -> None:
        if self.state not in ("unbound", "bound"):
            raise SocketError("invalid-state")
        ip, port = _checked(self.family, remote, peer=True, unicast=True)
        if not network.allows_outbound(ip, port):
            raise SocketError(_DENIED)
        if self.sock is None:
            unspecified = ipaddress.ip_address("0.0.0.0" if self.family == "ipv4" else "::")
            self.sock = _bound(network, socket.SOCK_STREAM, unspecified, 0, connecting=True, options=self.options)[0]
        sock = self.sock
        self.task = asyncio.ensure_future(_connect(sock, (str(ip), port)))
        self.state = "connecting"

    def connected(self, wasi: Wasi, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, int]:
        """The connection's input and output streams (after finish-connect or accept)."""
        if wasi.config.network.nodelay:
            with contextlib.suppress(OSError):
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state, self.writer, self.outgoing = "connected", writer, Pipe()
        self.pump = asyncio.ensure_future(_drain(self.outgoing, writer))
        incoming = Feed(lambda: reader.read(_READ))
        return wasi.table.push(incoming, holds=self), wasi.table.push(self.outgoing, holds=self)

    def remote_address(self) -> Any:
        if self.state != "connected" or self.sock is None:
            raise SocketError("invalid-state")
        host, port = self.sock.getpeername()[:2]
        return _socket_address(host, port)

    def ready(self) -> bool:
        if self.task is not None and self.state == "connecting":
            return self.task.done()
        if self.incoming is not None and self.state == "listening":
            return self.incoming.ready()
        return True

    async def wait(self) -> None:
        if self.task is not None and self.state == "connecting":
            await asyncio.wait([self.task])
        elif self.incoming is not None and self.state == "listening":
            await self.incoming.wait()

    def close(self) -> None:
        if self.incoming is not None:
            self.incoming.close()
        if self.pump is not None:
            self.pump.cancel()
        if self.writer is not None:
            self.writer.close()  # the transport closes the socket
        elif self.task is not None and self.sock is not None and self.task.done():
            _abandoned(self.sock, self.task)  # connected or failed, and finish-connect never came
        elif self.task is not None and self.sock is not None:
            self.task.cancel()
            self.task.add_done_callback(functools.partial(_abandoned, self.sock))
        else:
            super().close()


async def _connect(sock: socket.socket, target: tuple[Any, ...]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    await asyncio.get_running_loop().sock_connect(sock, target)
    return await asyncio.open_connection(sock=sock)


def _abandoned(sock: socket.socket, task: asyncio.Task[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    """A connect the guest dropped has ended: close what it made (the connection's transport owns
    the socket), once the loop let go of the socket."""
    if not task.cancelled() and task.exception() is None:
        task.result()[1].close()
    else:
        sock.close()


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


# --- UDP ----------------------------------------------------------------------------------------


class UdpSocket(_Socket):
    """A UDP socket: unbound, then bound. ``stream`` may limit it to one peer (``remote``);
    ``peers`` are the senders it received from, whom it may always answer."""

    kind = socket.SOCK_DGRAM

    def __init__(self, family: str) -> None:
        super().__init__(family)
        self.remote: tuple[IPAddress, int] | None = None
        self.peers: set[tuple[IPAddress, int]] = set()
        self.readable: _Watch | None = None
        self.writable: _Watch | None = None

    def streams(self, wasi: Wasi, remote: Any) -> tuple[int, int]:
        if self.state != "bound" or self.sock is None:
            raise SocketError("invalid-state")
        peer = None if remote is None else _checked(self.family, remote, peer=True, unicast=False)
        if peer is not None:
            self.check_peer(wasi.config.network, *peer)
        self.remote = peer
        if self.readable is None or self.writable is None:
            self.readable, self.writable = _Watch(self.sock, write=False), _Watch(self.sock, write=True)
        incoming, outgoing = IncomingDatagrams(self, self.readable), OutgoingDatagrams(self, self.writable)
        return wasi.table.push(incoming, holds=self), wasi.table.push(outgoing, holds=self)

    def check_peer(self, network: Network, ip: IPAddress, port: int) -> None:
        if (ip, port) not in self.peers and not network.allows_outbound(ip, port):
            raise SocketError(_DENIED)

    def remote_address(self) -> Any:
        if self.remote is None:
            raise SocketError("invalid-state")
        return _socket_address(str(self.remote[0]), self.remote[1])

    def receive(self, limit: int) -> list[tuple[bytes, Any]]:
        """Up to ``limit`` datagrams received now (from ``remote`` only, when it is set)."""
        assert self.sock is not None
        received: list[tuple[bytes, Any]] = []
        while len(received) < limit:
            try:
                data, sender = self.sock.recvfrom(_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:
                if received:
                    break
                raise
            peer = (ipaddress.ip_address(sender[0].split("%")[0]), sender[1])
            if self.remote is not None and peer != self.remote:
                continue  # not from the peer the streams are limited to, as a connected socket
            self.peers.add(peer)
            received.append((data, _socket_address(str(peer[0]), peer[1])))
        return received

    def send(self, network: Network, datagrams: list[tuple[bytes, Any]]) -> int:
        """Send datagrams in order until one cannot go now; an error only if the first fails."""
        assert self.sock is not None
        sent = 0
        for data, remote in datagrams:
            try:
                self.sock.sendto(data, self._target(network, remote))
            except BlockingIOError:
                break
            except (SocketError, OSError):
                if sent:
                    break
                raise
            sent += 1
        return sent

    def _target(self, network: Network, remote: Any) -> tuple[Any, ...]:
        if remote is None:
            if self.remote is None:
                raise SocketError("invalid-argument")
            return (str(self.remote[0]), self.remote[1])
        ip, port = _checked(self.family, remote, peer=True, unicast=False)
        if self.remote is not None and (ip, port) != self.remote:
            raise SocketError("invalid-argument")
        self.check_peer(network, ip, port)
        return (str(ip), port)

    def close(self) -> None:
        for watch in (self.readable, self.writable):
            if watch is not None:
                watch.close()
        super().close()


class _Datagrams:
    """A datagram stream of ``udp``: ready when its socket is (``watch``)."""

    def __init__(self, udp: UdpSocket, watch: _Watch) -> None:
        self.udp = udp
        self.watch = watch

    def ready(self) -> bool:
        return self.watch.ready()

    async def wait(self) -> None:
        await self.watch.wait()


class IncomingDatagrams(_Datagrams):
    """``incoming-datagram-stream``: ready when the socket has a datagram."""


class OutgoingDatagrams(_Datagrams):
    """``outgoing-datagram-stream``: ``check-send`` permits a batch while the socket is writable,
    and ``send`` traps when given more than that."""

    permit = 0


# --- functions --------------------------------------------------------------------------------


def instance_network(wasi: Wasi) -> int:
    return wasi.table.push(InstanceNetwork())


def create_tcp_socket(wasi: Wasi, family: str) -> Ok | Err:
    return Ok(wasi.table.push(TcpSocket(family)))


def create_udp_socket(wasi: Wasi, family: str) -> Ok | Err:
    return Ok(wasi.table.push(UdpSocket(family)))


def start_bind(wasi: Wasi, rep: int, _network: int, local: Any) -> Ok | Err:
    sock = wasi.table.get(rep, _Socket)
    return _outcome(lambda: sock.bind(wasi.config.network, local))


def finish_bind(wasi: Wasi, rep: int) -> Ok | Err:
    return wasi.table.get(rep, _Socket).finish("bind-started", "bound")


def start_listen(wasi: Wasi, rep: int) -> Ok | Err:
    return _outcome(wasi.table.get(rep, TcpSocket).listen)


def finish_listen(wasi: Wasi, rep: int) -> Ok | Err:
    return wasi.table.get(rep, TcpSocket).finish("listen-started", "listening")


async def accept(wasi: Wasi, rep: int) -> Ok | Err:
    listener = wasi.table.get(rep, TcpSocket)
    if listener.state != "listening" or listener.sock is None:
        return Err("invalid-state")
    try:
        conn, _peer = listener.sock.accept()
    except OSError as exc:
        return Err(_code(exc))
    accepted = TcpSocket(listener.family)
    accepted.sock, accepted.guest_port, accepted.options = conn, listener.guest_port, dict(listener.options)
    try:
        conn.setblocking(False)
        _apply(conn, accepted.options)  # what Linux does not copy from the listener itself
        reader, writer = await asyncio.open_connection(sock=conn)
    except BaseException:
        conn.close()
        raise
    incoming, outgoing = accepted.connected(wasi, reader, writer)
    return Ok((wasi.table.push(accepted), incoming, outgoing))


def set_listen_backlog_size(wasi: Wasi, rep: int, size: int) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    if size == 0:
        return Err("invalid-argument")
    if sock.state in ("connecting", "connected"):
        return Err("invalid-state")
    return _outcome(lambda: sock.resize(size))


def start_connect(wasi: Wasi, rep: int, _network: int, remote: Any) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    return _outcome(lambda: sock.connect(wasi.config.network, remote))


def finish_connect(wasi: Wasi, rep: int) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    if sock.task is None or sock.state != "connecting":
        return Err("not-in-progress")
    if not sock.task.done():
        return Err("would-block")
    exc = sock.task.exception() if not sock.task.cancelled() else None
    if sock.task.cancelled() or exc is not None:
        sock.state = "closed"
        return Err(_code(exc, unmapped="remote-unreachable") if exc is not None else "unknown")
    return Ok(sock.connected(wasi, *sock.task.result()))


def local_address(wasi: Wasi, rep: int) -> Ok | Err:
    return _outcome(wasi.table.get(rep, _Socket).local_address)


def remote_address(wasi: Wasi, rep: int) -> Ok | Err:
    return _outcome(wasi.table.get(rep, _Socket).remote_address)


def is_listening(wasi: Wasi, rep: int) -> bool:
    return wasi.table.get(rep, TcpSocket).state == "listening"


def address_family(wasi: Wasi, rep: int) -> str:
    return wasi.table.get(rep, _Socket).family


def tcp_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, TcpSocket)


def udp_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, UdpSocket)


def shutdown(wasi: Wasi, rep: int, how: str) -> Ok | Err:
    sock = wasi.table.get(rep, TcpSocket)
    if sock.outgoing is None:
        return Err("invalid-state")
    if how in ("send", "both"):
        sock.outgoing.finish()
    return Ok(None)


def udp_stream(wasi: Wasi, rep: int, remote: Any) -> Ok | Err:
    sock = wasi.table.get(rep, UdpSocket)
    return _outcome(lambda: sock.streams(wasi, remote))


def receive(wasi: Wasi, rep: int, limit: int) -> Ok | Err:
    return _outcome(lambda: wasi.table.get(rep, IncomingDatagrams).udp.receive(limit))


def incoming_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, IncomingDatagrams)


def check_send(wasi: Wasi, rep: int) -> Ok | Err:
    stream = wasi.table.get(rep, OutgoingDatagrams)
    stream.permit = _SEND_BATCH if stream.ready() else 0
    return Ok(stream.permit)


def send(wasi: Wasi, rep: int, datagrams: list[tuple[bytes, Any]]) -> Ok | Err:
    stream = wasi.table.get(rep, OutgoingDatagrams)
    if not datagrams:
        return Ok(0)
    if len(datagrams) > stream.permit:
        raise ValueError(f"send of {len(datagrams)} datagrams, but check-send permitted {stream.permit}")
    stream.permit = 0
    return _outcome(lambda: stream.udp.send(wasi.config.network, datagrams))


def outgoing_subscribe(wasi: Wasi, rep: int) -> int:
    return subscribe(wasi, rep, OutgoingDatagrams)


# --- name lookup ------------------------------------------------------------------------------


class Lookup(TaskReadiness):
    """A name being resolved; ``resolve-next-address`` hands out its addresses one by one."""

    def __init__(self, task: asyncio.Task[list[str]]) -> None:
        super().__init__(task)
        self.addresses: list[str] | None = None


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


def _getter(kind: type[_Socket], name: str) -> Callable[[Wasi, int], Ok | Err]:
    def get(wasi: Wasi, rep: int) -> Ok | Err:
        sock = wasi.table.get(rep, kind)
        return _outcome(lambda: sock.get_option(name))

    return get


def _setter(kind: type[_Socket], name: str) -> Callable[[Wasi, int, int], Ok | Err]:
    def set_(wasi: Wasi, rep: int, value: int) -> Ok | Err:
        sock = wasi.table.get(rep, kind)
        return _outcome(lambda: sock.set_option(name, value))

    return set_


def _option_functions(interface: str, kind: type[_Socket], resource: str, names: dict[str, str]) -> dict[
    tuple[str, str], Callable[..., Any]
]:  # fmt: skip
    """The getter and setter of each option (``names``: the WIT's name -> ``_OPTIONS``' name)."""
    functions: dict[tuple[str, str], Callable[..., Any]] = {}
    for wit, name in names.items():
        functions[interface, f"[method]{resource}.{wit}"] = _getter(kind, name)
        functions[interface, f"[method]{resource}.set-{wit}"] = _setter(kind, name)
    return functions


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    ("wasi:sockets/instance-network@0.2.0", "instance-network"): instance_network,
    ("wasi:sockets/tcp-create-socket@0.2.0", "create-tcp-socket"): create_tcp_socket,
    ("wasi:sockets/udp-create-socket@0.2.0", "create-udp-socket"): create_udp_socket,
    (TCP, "[method]tcp-socket.start-bind"): start_bind,
    (TCP, "[method]tcp-socket.finish-bind"): finish_bind,
    (TCP, "[method]tcp-socket.start-listen"): start_listen,
    (TCP, "[method]tcp-socket.finish-listen"): finish_listen,
    (TCP, "[method]tcp-socket.accept"): accept,
    (TCP, "[method]tcp-socket.set-listen-backlog-size"): set_listen_backlog_size,
    (TCP, "[method]tcp-socket.start-connect"): start_connect,
    (TCP, "[method]tcp-socket.finish-connect"): finish_connect,
    (TCP, "[method]tcp-socket.local-address"): local_address,
    (TCP, "[method]tcp-socket.remote-address"): remote_address,
    (TCP, "[method]tcp-socket.is-listening"): is_listening,
    (TCP, "[method]tcp-socket.address-family"): address_family,
    (TCP, "[method]tcp-socket.subscribe"): tcp_subscribe,
    (TCP, "[method]tcp-socket.shutdown"): shutdown,
    (UDP, "[method]udp-socket.start-bind"): start_bind,
    (UDP, "[method]udp-socket.finish-bind"): finish_bind,
    (UDP, "[method]udp-socket.stream"): udp_stream,
    (UDP, "[method]udp-socket.local-address"): local_address,
    (UDP, "[method]udp-socket.remote-address"): remote_address,
    (UDP, "[method]udp-socket.address-family"): address_family,
    (UDP, "[method]udp-socket.subscribe"): udp_subscribe,
    (UDP, "[method]incoming-datagram-stream.receive"): receive,
    (UDP, "[method]incoming-datagram-stream.subscribe"): incoming_subscribe,
    (UDP, "[method]outgoing-datagram-stream.check-send"): check_send,
    (UDP, "[method]outgoing-datagram-stream.send"): send,
    (UDP, "[method]outgoing-datagram-stream.subscribe"): outgoing_subscribe,
    (LOOKUP, "resolve-addresses"): resolve_addresses,
    (LOOKUP, "[method]resolve-address-stream.resolve-next-address"): resolve_next_address,
    (LOOKUP, "[method]resolve-address-stream.subscribe"): lookup_subscribe,
    **_option_functions(TCP, TcpSocket, "tcp-socket", {name: name for name in _OPTIONS}),
    **_option_functions(UDP, UdpSocket, "udp-socket", {
        "unicast-hop-limit": "hop-limit", "receive-buffer-size": "receive-buffer-size",
        "send-buffer-size": "send-buffer-size",
    }),
}  # fmt: skip
