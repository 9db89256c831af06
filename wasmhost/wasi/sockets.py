"""WasmEdge's socket extension of ``wasi_snapshot_preview1``, every ABI generation.

Guest sockets are real non-blocking host sockets in the same fd table as files. A socket
the guest thinks is blocking waits through the context's waiter (the asyncio loop when
serving), so waits are interruptible and never block other guests. Layouts, errno values
and generation rules follow docs/spec: ``SOCKET_FUNCTIONS`` lists every (name, type).
"""

from __future__ import annotations

import contextlib
import errno as os_errno
import fcntl
import ipaddress
import logging
import os
import select
import socket
import struct
import termios
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .._native import sockio
from .._native.sockio import Front, IoRecord
from ..net.connections import Connection, Connections
from ..net.policy import IPAddress, Network, host_name, normalise
from .abi import FDFLAG_NONBLOCK, U32, Errno, Filetype, Rights, WasiError, errno_from_os, from_os
from .context import WasiContext
from .fdtable import Buffers, Descriptor, span
from .linking import Table
from .memory import GuestMemory
from .poll import FD_READ

log = logging.getLogger("wasmhost")
_T = TypeVar("_T")

# WASI address families and socket types (generation 2 numbering, WasmEdge >= 0.10).
INET4, INET6 = 1, 2
DGRAM, STREAM = 1, 2
_FAMILY = {INET4: socket.AF_INET, INET6: socket.AF_INET6}
_KIND = {DGRAM: socket.SOCK_DGRAM, STREAM: socket.SOCK_STREAM}
_WASI_FAMILY: dict[int, int] = {socket.AF_INET: INET4, socket.AF_INET6: INET6}
_WASI_KIND: dict[int, int] = {socket.SOCK_DGRAM: DGRAM, socket.SOCK_STREAM: STREAM}
# Generation 1 guests (crate 0.2-0.3) number both from zero.
_G1_FAMILY = {0: INET4, 1: INET6}
_G1_KIND = {0: DGRAM, 1: STREAM}

RIFLAG_PEEK, RIFLAG_WAITALL = 1, 2
ROFLAG_TRUNCATED = 1
_STORAGE = 128
_ADDRESS = struct.Struct("<II")  # buf, buf_len
_ADDRINFO = struct.Struct("<HBBBxxxIIII I".replace(" ", ""))  # 28 bytes
_SOCKADDR = struct.Struct("<BxxxII")  # family, sa_data_len, sa_data
_LINGER = struct.Struct("<ii")
_TIMEVAL = struct.Struct("<qq")
_U16 = struct.Struct("<H")
# The C fast path reports a failed call as from_os would.
sockio.ERRNOS[:] = [errno_from_os(code) for code in range(len(sockio.ERRNOS))]
# Plain ints: the socket module's flags are IntFlag members, whose ``&`` runs Python code.
_MSG_TRUNC, _MSG_PEEK, _MSG_WAITALL, _MSG_NOSIGNAL = (
    int(f) for f in (socket.MSG_TRUNC, socket.MSG_PEEK, socket.MSG_WAITALL, socket.MSG_NOSIGNAL)
)
#: The 7-param ``sock_recv_from`` of crate 0.4.x reads {family u16, port u16, IPv4} from a
#: 16-byte buffer and takes the sender for IPv4 only when the family is Linux's AF_INET (2).
_OLD_RECV_FROM = struct.Struct("<HH4s8x")
_OLD_AF_INET = 2

#: How long a guest's name lookup may run before it fails with AIAGAIN (glibc's resolver
#: alone may take 5 s per server and attempt).
RESOLVE_TIMEOUT = 5.0
#: Lookups running at once in this process, abandoned ones included; past that a lookup
#: fails with AIAGAIN at once instead of starting another thread.
_LOOKUP_SLOTS = threading.BoundedSemaphore(32)

SOCKET_RIGHTS = int(
    Rights.FD_READ | Rights.FD_WRITE | Rights.FD_FDSTAT_SET_FLAGS | Rights.POLL_FD_READWRITE
    | Rights.FD_FILESTAT_GET | Rights.SOCK_SHUTDOWN
) | sum(1 << b for b in range(29, 36))  # fmt: skip
sockio.FRESH.rights = sockio.FRESH.inheriting = SOCKET_RIGHTS

# Option names (WASI number -> (level, Linux name, payload kind)).
_OPTIONS: dict[int, tuple[int, int, str]] = {
    0: (socket.SOL_SOCKET, socket.SO_REUSEADDR, "int"),
    1: (socket.SOL_SOCKET, socket.SO_TYPE, "type"),
    2: (socket.SOL_SOCKET, socket.SO_ERROR, "error"),
    3: (socket.SOL_SOCKET, socket.SO_DONTROUTE, "int"),
    4: (socket.SOL_SOCKET, socket.SO_BROADCAST, "int"),
    5: (socket.SOL_SOCKET, socket.SO_SNDBUF, "int"),
    6: (socket.SOL_SOCKET, socket.SO_RCVBUF, "int"),
    7: (socket.SOL_SOCKET, socket.SO_KEEPALIVE, "int"),
    8: (socket.SOL_SOCKET, socket.SO_OOBINLINE, "int"),
    9: (socket.SOL_SOCKET, socket.SO_LINGER, "linger"),
    10: (socket.SOL_SOCKET, socket.SO_RCVLOWAT, "int"),
    11: (socket.SOL_SOCKET, socket.SO_RCVTIMEO, "timeval"),
    12: (socket.SOL_SOCKET, socket.SO_SNDTIMEO, "timeval"),
    13: (socket.SOL_SOCKET, socket.SO_ACCEPTCONN, "int"),
    14: (socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25), "bytes"),
}

#: (import name, wasm parameter types, method). Same-named entries differ by type and are
#: chosen by the type the module imports, as WasmEdge does.
SOCKET_FUNCTIONS: list[tuple[str, str, str]] = [
    ("sock_open", "iii", "sock_open"),
    ("sock_bind", "iii", "sock_bind"),
    ("sock_connect", "iii", "sock_connect"),
    ("sock_listen", "ii", "sock_listen"),
    ("sock_accept", "ii", "sock_accept_v1"),
    ("sock_accept", "iii", "sock_accept_v2"),
    ("sock_recv", "iiiiii", "sock_recv"),
    ("sock_recv_from", "iiiiiii", "sock_recv_from_v1"),
    ("sock_recv_from", "iiiiiiii", "sock_recv_from_v2"),
    ("sock_send", "iiiii", "sock_send"),
    ("sock_send_to", "iiiiiii", "sock_send_to"),
    ("sock_shutdown", "ii", "sock_shutdown"),
    ("sock_getsockopt", "iiiii", "sock_getsockopt"),
    ("sock_setsockopt", "iiiii", "sock_setsockopt"),
    ("sock_getlocaladdr", "iiii", "sock_getlocaladdr_v1"),
    ("sock_getlocaladdr", "iii", "sock_getlocaladdr_v2"),
    ("sock_getpeeraddr", "iiii", "sock_getpeeraddr_v1"),
    ("sock_getpeeraddr", "iii", "sock_getpeeraddr_v2"),
    ("sock_getaddrinfo", "iiiiiiii", "sock_getaddrinfo"),
    ("sock_open_v2", "iii", "sock_open"),
    ("sock_bind_v2", "iii", "sock_bind_v2"),
    ("sock_connect_v2", "iii", "sock_connect_v2"),
    ("sock_listen_v2", "ii", "sock_listen"),
    ("sock_accept_v2", "iii", "sock_accept_v2"),
    ("sock_recv_v2", "iiiiii", "sock_recv"),
    ("sock_recv_from_v2", "iiiiiiii", "sock_recv_from_v2"),
    ("sock_send_v2", "iiiii", "sock_send"),
    ("sock_send_to_v2", "iiiiiii", "sock_send_to_v2"),
    ("sock_getlocaladdr_v2", "iii", "sock_getlocaladdr_v2"),
    ("sock_getpeeraddr_v2", "iii", "sock_getpeeraddr_v2"),
]


class Socket(Descriptor):
    """A guest socket: a non-blocking host socket; NONBLOCK is the guest's own view."""

    def __init__(
        self, sock: socket.socket, flags: int = 0, kind: tuple[int, int, int] | None = None, io: IoRecord | None = None
    ) -> None:
        #: Shared with the C fast paths (``_native.sockio``): ``io_seq``, what poll saw, the
        #: flags and rights, ``answered``, ``listening``, the guest port and the byte counts
        #: live here. A new socket's starts as ``sockio.FRESH``; ``io``: a connection C
        #: accepted, whose record is already in use. (So ``Descriptor.__init__`` has nothing to set.)
        if io is None:
            io = IoRecord.fresh()
            io.flags = flags
        self._io = io
        self._limited_by: Connections | None = None
        sock.setblocking(False)
        #: (family, type, protocol), given when known: ``socket.type`` and ``family`` are slow.
        self.kind = kind or (sock.family, sock.type, sock.proto)
        self.datagram = self.kind[1] == socket.SOCK_DGRAM
        self.host_socket(sock)
        self.filetype = Filetype.SOCKET_DGRAM if self.datagram else Filetype.SOCKET_STREAM
        self.peers: set[tuple[str, int]] = set()  # UDP senders the guest may answer
        self.timeouts: dict[int, float | None] = {}  # SO_RCVTIMEO / SO_SNDTIMEO in seconds
        #: An accepted connection: counted in ``owner`` until it closes, and its access log
        #: record when the log is on.
        self.owner: Connections | None = None
        self.record: Connection | None = None
        self._parked: socket.socket | None = None

    def host_socket(self, sock: socket.socket) -> None:
        """Make ``sock`` this descriptor's host socket (the C fast path takes streams only)."""
        self.sock = sock
        self._io.os_fd = -1 if self.datagram else sock.fileno()

    @property
    def io(self) -> IoRecord:
        return self._io

    @property
    def io_seq(self) -> int:
        seq: int = self._io.seq
        return seq

    @io_seq.setter
    def io_seq(self, value: int) -> None:
        self._io.seq = value

    @property
    def flags(self) -> int:
        flags: int = self._io.flags
        return flags

    @flags.setter
    def flags(self, value: int) -> None:
        self._io.flags = value

    @property
    def rights(self) -> int:
        rights: int = self._io.rights
        return rights

    @rights.setter
    def rights(self, value: int) -> None:
        self._io.rights = value
        self._io.pollable = self._polled_in_c()

    @property
    def inheriting(self) -> int:
        inheriting: int = self._io.inheriting
        return inheriting

    @inheriting.setter
    def inheriting(self, value: int) -> None:
        self._io.inheriting = value

    @property
    def guest_port(self) -> int | None:
        """The port the guest asked for, when the host's differs (``--publish``)."""
        port: int = self._io.port
        return None if port < 0 else port

    @guest_port.setter
    def guest_port(self, value: int | None) -> None:
        self._io.port = -1 if value is None else value

    @property
    def listening(self) -> bool:
        """Listening, as the guest asked (``sock_listen``): accept looks at the backlog first."""
        return bool(self._io.listening)

    @listening.setter
    def listening(self, value: bool) -> None:
        self._io.listening = value

    @property
    def limited_by(self) -> Connections | None:
        """A listener under a concurrency limit: while ``limited_by.full`` the guest polls
        ``_parked`` (a socket that is never readable) instead, so it is not told to accept."""
        return self._limited_by

    @limited_by.setter
    def limited_by(self, value: Connections | None) -> None:
        self._limited_by = value
        self._io.pollable = self._polled_in_c()

    def _polled_in_c(self) -> bool:
        """Whether C's poll may look at the host socket: the guest may poll it, and nothing
        (a concurrency limit) makes Python's ``os_fd`` another descriptor."""
        return bool(self.rights & Rights.POLL_FD_READWRITE) and self._limited_by is None

    def seen(self, kind: int) -> int | None:
        seq: int = self._io.seen[kind - 1]
        return None if seq == sockio.NEVER else seq

    def saw(self, kind: int) -> None:
        self._io.seen[kind - 1] = self._io.seq

    @property
    def answered(self) -> bool:
        """The last data moved was sent, not received: no request is waiting for an answer
        (what lets a draining server close a keep-alive connection between requests)."""
        return bool(self._io.answered)

    def os_fd(self) -> int:
        if self.limited_by is not None and self.limited_by.full:
            if self._parked is None:
                self._parked = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            return self._parked.fileno()
        return self.sock.fileno()

    def host_fds(self) -> tuple[int, ...]:
        parked = () if self._parked is None else (self._parked.fileno(),)
        return (self.sock.fileno(), *parked)

    def timeout(self, write: bool) -> float | None:
        return self.timeouts.get(socket.SO_SNDTIMEO if write else socket.SO_RCVTIMEO)

    def reported_readable(self) -> bool:
        """Whether poll reported this socket readable after its last I/O call, not counting
        the call being made (``WasiContext.blocking`` counts a call before making it)."""
        return self.seen(FD_READ) == self.io_seq - 1

    def switch_family(self, family: int) -> None:
        """Re-create the (not yet bound) host socket in another family, keeping SO_REUSEADDR:
        lets ``--host ::1`` serve a guest that opened an IPv4 socket."""
        reuse = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        replacement = socket.socket(family, self.sock.type)
        replacement.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuse)
        replacement.setblocking(False)
        self.sock.close()
        self.host_socket(replacement)
        self.kind = (replacement.family, replacement.type, replacement.proto)

    def recv(self, bufs: Buffers, flags: int = 0) -> tuple[int, int, Any]:
        """``recvmsg`` into ``bufs``: (bytes, message flags, sender). One buffer of a stream
        (the usual read) takes ``recv_into``: no flags or sender to report, and cheaper. Not
        an empty one: ``recv`` of 0 bytes returns 0 at once, where ``recvmsg`` (WasmEdge's
        call, and the C path's) says AGAIN when there is nothing to read."""
        if len(bufs) == 1 and bufs[0].nbytes and not self.datagram:
            n, msg_flags, addr = _os(self.sock.recv_into, bufs[0], 0, flags), 0, None
        else:
            n, _anc, msg_flags, addr = _os(self.sock.recvmsg_into, bufs, 0, flags)
        if n:
            self._io.answered = 0
            self._io.received += n
        return n, msg_flags, addr

    def send(self, bufs: Buffers, *target: Any) -> int:
        if len(bufs) == 1 and not target:
            sent: int = _os(self.sock.send, bufs[0], _MSG_NOSIGNAL)
        else:
            sent = _os(self.sock.sendmsg, bufs, (), _MSG_NOSIGNAL, *target)
        if sent:
            self._io.answered = 1
            self._io.sent += sent
        return sent

    def readv(self, bufs: Buffers) -> int:
        return self.recv(bufs)[0]

    def writev(self, bufs: Buffers) -> int:
        return self.send(bufs)

    def idle(self) -> bool:
        """Open, answered, nothing unread and everything sent acknowledged by the peer."""
        if self.sock.fileno() < 0 or not self.answered:
            return False
        try:
            unread = fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
            unsent = fcntl.ioctl(self.sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return True  # not connected any more: nothing in flight
        return unread == unsent == b"\0\0\0\0"

    def stat(self) -> None:
        return None

    def close(self) -> None:
        self._io.os_fd = -1
        if self.owner is not None:
            self.owner.closed(self.record, self._io.received, self._io.sent)
            self.owner = None
        self.sock.close()
        if self._parked is not None:
            self._parked.close()


def _os(func: Callable[..., _T], *args: Any) -> _T:
    try:
        return func(*args)
    except OSError as exc:
        raise from_os(exc) from None


def _ip(family: int, raw: bytes) -> IPAddress:
    return ipaddress.IPv4Address(raw[:4]) if family == INET4 else ipaddress.IPv6Address(raw[:16])


class Sockets:
    """The socket functions of one guest, on its context's fd table and waiter."""

    def __init__(self, ctx: WasiContext, network: Network, name: str) -> None:
        self.ctx = ctx
        self.fds = ctx.fds
        self.network = network
        self.name = name
        self.g1 = False  # switched on by the first zero family/type (crate 0.2-0.3 guests)
        self.listening: list[tuple[str, int]] = []
        self.connections = Connections(name, network.limit_concurrency)
        self._warned: set[str] = set()
        self._listeners: list[Socket] = []
        self.fds.adopt = self._adopt

    @property
    def mem(self) -> GuestMemory:
        return self.ctx.memory

    def fronted(self, table: Table) -> Table:
        """``table`` with ``sock_recv``, ``sock_send``, ``sock_accept`` and ``sock_shutdown``
        behind their C fast paths: C first, these methods when it declines (``_native.sockio``)."""
        fronts: dict[object, Front] = {
            self.sock_recv: Front(sockio.RECV, self.sock_recv, self.fds.native),
            self.sock_send: Front(sockio.SEND, self.sock_send, self.fds.native),
            self.sock_accept_v1: Front(sockio.ACCEPT, self.sock_accept_v1, self.fds.native),
            self.sock_accept_v2: Front(sockio.ACCEPT, self.sock_accept_v2, self.fds.native),
            self.sock_shutdown: Front(sockio.SHUTDOWN, self.sock_shutdown, self.fds.native),
        }
        return {key: fronts.get(func, func) for key, func in table.items()}

    def _socket(self, fd: int) -> Socket:
        desc = self.fds.get(fd)
        if not isinstance(desc, Socket):
            raise WasiError(Errno.NOTSOCK)
        return desc

    def _warn_once(self, key: str, message: str) -> None:
        """Log ``message`` the first time ``key`` comes up; past ``_MAX_WARNINGS`` distinct
        keys, one last line says the rest are not logged (a guest cannot flood the log)."""
        if key in self._warned or len(self._warned) > _MAX_WARNINGS:
            return
        self._warned.add(key)
        if len(self._warned) > _MAX_WARNINGS:
            log.warning("%s: more network warnings; no more are logged for this guest", self.name)
        else:
            log.warning("%s: %s", self.name, message)

    # --- addresses -----------------------------------------------------------------------

    def _address(self, ptr: int, storage: bool) -> tuple[int, IPAddress]:
        """(WASI family, IP) from a WasiAddress; 4/16 raw bytes, or 128-byte storage (V2)."""
        buf, length = _ADDRESS.unpack_from(self.mem.check(ptr, 8), ptr)
        if length == 4:
            return INET4, _ip(INET4, self.mem.read(buf, 4))
        if length == 16:
            return INET6, _ip(INET6, self.mem.read(buf, 16))
        if length == _STORAGE and storage:
            raw = self.mem.read(buf, _STORAGE)
            family = raw[0] | raw[1] << 8
            if family not in _FAMILY:
                raise WasiError(Errno.AFNOSUPPORT)
            return family, _ip(family, raw[2:])
        raise WasiError(Errno.INVAL)

    def _write_address(self, ptr: int, addr: tuple[Any, ...], storage: bool) -> int:
        """Write the IP of a host sockaddr into a WasiAddress; returns the WASI family."""
        buf, length = _ADDRESS.unpack_from(self.mem.check(ptr, 8), ptr)
        ip = ipaddress.ip_address(addr[0].split("%")[0])
        family = INET4 if ip.version == 4 else INET6
        if storage:
            if length != _STORAGE:
                raise WasiError(Errno.INVAL)
            self.mem.write(buf, (_U16.pack(family) + ip.packed).ljust(_STORAGE, b"\0"))
        elif length not in (4, 16):
            raise WasiError(Errno.INVAL)
        elif len(ip.packed) > length:
            raise WasiError(Errno.NOMEM)
        else:
            self.mem.write(buf, ip.packed)
        return family

    def _sockaddr(self, sock: Socket, family: int, ip: IPAddress, port: int) -> tuple[Any, ...]:
        host_family = _FAMILY[family]
        if host_family != sock.sock.family:
            raise WasiError(Errno.AFNOSUPPORT)
        return (str(ip), port & 0xFFFF) if family == INET4 else (str(ip), port & 0xFFFF, 0, 0)

    # --- open / bind / listen / connect / accept -----------------------------------------

    def sock_open(self, family: int, kind: int, out: int) -> None:
        if family == 0 or kind == 0:
            self.g1 = True
        if self.g1:
            family, kind = _G1_FAMILY.get(family, -1), _G1_KIND.get(kind, -1)
        if family == 3:
            raise WasiError(Errno.NOSYS)
        if family not in _FAMILY or kind not in _KIND:
            raise WasiError(Errno.INVAL)
        self.mem.check(out, 4)
        sock = _os(socket.socket, _FAMILY[family], _KIND[kind])
        self.mem.set_u32(out, self.fds.add(Socket(sock)))

    def sock_bind(self, fd: int, addr: int, port: int) -> None:
        self._bind(fd, addr, port, storage=False)

    def sock_bind_v2(self, fd: int, addr: int, port: int) -> None:
        self._bind(fd, addr, port, storage=True)

    def _bind(self, fd: int, addr: int, port: int, storage: bool) -> None:
        sock = self._socket(fd)
        family, ip = self._address(addr, storage)
        self._sockaddr(sock, family, ip, port)  # the guest's own request must match its socket
        self._bind_host(sock, ip, port & 0xFFFF, switch=True)
        if sock.datagram:
            self._announce(sock, "udp ")

    def _bind_host(self, sock: Socket, ip: IPAddress, port: int, switch: bool) -> None:
        """Bind where the policy puts the guest's ``bind(ip, port)``. A socket of the other
        family than the target is re-created in that family if ``switch`` (it is not
        connected to anything yet), else refused: its peer is of its own family."""
        host, host_port = self.network.bind_target(ip, port)
        host_ip = ipaddress.ip_address(host)
        host_family = INET4 if host_ip.version == 4 else INET6
        if _FAMILY[host_family] != sock.sock.family:
            if not switch:
                other = 10 - host_ip.version
                self._warn_once(f"family {host}", f"local address {host} cannot be used by an IPv{other} socket")
                raise WasiError(Errno.ADDRNOTAVAIL)
            self.ctx.forget(sock.host_fds())
            sock.switch_family(_FAMILY[host_family])
        target = self._sockaddr(sock, host_family, host_ip, host_port)
        try:
            if self.network.reuse_port:
                sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.sock.bind(target)
        except OSError as exc:
            self._warn_once(f"bind {target}", f"cannot bind {_show(target)}: {exc.strerror}")
            raise from_os(exc) from None
        if port and host_port != port:
            sock.guest_port = port

    def _bind_unbound(self, sock: Socket, connecting: bool) -> None:
        """Bind a socket the guest left unbound as if it had bound the unspecified address,
        port 0, so ``--host`` and ``-p`` hold for the kernel's implicit binds too (listen,
        and the local side of connect and send_to). Nothing to do where the policy keeps
        the kernel's own choice (no override, or an unspecified one for an outgoing socket)."""
        if sock.sock.getsockname()[1]:
            return
        unspecified = ipaddress.ip_address("0.0.0.0" if sock.sock.family == socket.AF_INET else "::")
        host, port = self.network.bind_target(unspecified, 0)
        host_ip = ipaddress.ip_address(host)
        if port == 0 and host_ip.is_unspecified and (connecting or host_ip.version == unspecified.version):
            return
        if connecting and not sock.datagram:
            # Take the port at connect time, so outgoing connections share ephemeral ports.
            with contextlib.suppress(OSError):
                sock.sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        self._bind_host(sock, unspecified, 0, switch=not connecting)

    def sock_listen(self, fd: int, backlog: int) -> None:
        sock = self._socket(fd)
        self._bind_unbound(sock, connecting=False)
        _os(sock.sock.listen, min(backlog, 4096) or 128)
        sock.listening = True
        self._tune(sock)  # accepted connections inherit TCP_NODELAY: no setsockopt per accept
        self._announce(sock, "")

    def _announce(self, sock: Socket, proto: str) -> None:
        self._listeners.append(sock)
        if not proto and self.connections.limit is not None:
            sock.limited_by = self.connections
        where = sock.sock.getsockname()
        self.listening.append((where[0], where[1]))
        guest = f" (guest port {sock.guest_port})" if sock.guest_port is not None else ""
        log.info("%s: listening on %s%s%s", self.name, proto, _show(where), guest)

    # --- draining ------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Close every TCP listener on the host side, so the kernel sends new connections
        to other processes sharing the port (or refuses them). The guest keeps its
        descriptor: it is never ready again, and accepting on it fails."""
        for listener in self._listeners:
            if listener.sock.type != socket.SOCK_STREAM or listener.sock.fileno() < 0:
                continue
            where = _show(listener.sock.getsockname())
            self.ctx.forget(listener.host_fds())
            listener.sock.close()
            listener.host_socket(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))  # writable, never readable
            listener.listening = False
            log.info("%s: stopped accepting on %s", self.name, where)
        self._listeners.clear()

    def close_idle(self) -> int:
        """Shut down the accepted connections that have no request in flight; returns how
        many are still open (the guest closes the shut-down ones when it sees the EOF)."""
        open_now = 0
        accepted = {desc for _, desc in self.fds.items() if isinstance(desc, Socket) and desc.owner is self.connections}
        for conn in accepted:
            if conn.idle():
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
            elif conn.sock.fileno() >= 0:
                open_now += 1
        return open_now

    async def sock_connect(self, fd: int, addr: int, port: int) -> None:
        await self._connect(fd, addr, port, storage=False)

    async def sock_connect_v2(self, fd: int, addr: int, port: int) -> None:
        await self._connect(fd, addr, port, storage=True)

    async def _connect(self, fd: int, addr: int, port: int, storage: bool) -> None:
        sock = self._socket(fd)
        family, ip = self._address(addr, storage)
        target = self._sockaddr(sock, family, ip, port)
        self._check_outbound(ip, port & 0xFFFF, "connect to")
        self._bind_unbound(sock, connecting=True)
        sock.io_seq += 1
        code = sock.sock.connect_ex(target)
        if code in (os_errno.EINPROGRESS, os_errno.EAGAIN):
            if sock.flags & FDFLAG_NONBLOCK:
                raise WasiError(Errno.INPROGRESS)
            await self._until_connected(sock)
            code = sock.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise from_os(OSError(code, ""))
        self._tune(sock)

    async def _until_connected(self, sock: Socket) -> None:
        """Wait for a blocking connect. As on Linux, SO_SNDTIMEO bounds the wait and its
        expiry is ``INPROGRESS`` (the connection attempt goes on)."""
        timeout = sock.timeout(write=True)
        deadline = None if timeout is None else self.ctx.clock() + timeout
        while not _ready_now(sock.sock, select.POLLOUT):
            remaining = None if deadline is None else deadline - self.ctx.clock()
            if remaining is not None and remaining <= 0:
                raise WasiError(Errno.INPROGRESS)
            await self.ctx.wait([], [sock.os_fd()], remaining)

    def _check_outbound(self, ip: IPAddress, port: int, action: str) -> None:
        if not self.network.allows_outbound(ip, port):
            asked, rule = _show((str(ip), port)), _show((str(normalise(ip)), port))
            self._warn_once(
                f"deny {asked}", f"{action} {asked} denied by network policy (allow it with --allow-outbound {rule})"
            )
            raise WasiError(Errno.ACCES)

    def _tune(self, sock: Socket) -> None:
        if self.network.nodelay and not sock.datagram:
            with contextlib.suppress(OSError):
                sock.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def sock_accept_v1(self, fd: int, out: int) -> None:
        await self._accept(fd, 0, out)

    async def sock_accept_v2(self, fd: int, flags: int, out: int) -> None:
        if flags & ~0x1F:
            raise WasiError(Errno.INVAL)
        await self._accept(fd, flags & FDFLAG_NONBLOCK, out)

    async def _accept(self, fd: int, flags: int, out: int) -> None:
        listener = self._socket(fd)
        self.mem.check(out, 4)
        conn, peer = await self.ctx.blocking(listener, False, lambda: self._accept_now(listener))
        accepted = Socket(conn, flags, listener.kind)
        accepted.guest_port = listener.guest_port
        accepted.owner, accepted.record = self.connections, self.connections.opened(lambda: _show(peer))
        self.mem.set_u32(out, self.fds.add(accepted))
        self.fds.native.accepting(self.connections.counts)  # the spare records ran out, or were never made

    def _adopt(self, io: IoRecord) -> Socket:
        """The descriptor of a connection the C path accepted (``FdTable.adopt``)."""
        accepted = Socket(socket.socket(fileno=io.os_fd), io=io)
        accepted.owner = self.connections
        return accepted

    def _accept_now(self, listener: Socket) -> tuple[socket.socket, Any]:
        if listener.limited_by is not None and listener.limited_by.full:
            raise WasiError(Errno.AGAIN)
        if listener.listening and not listener.reported_readable() and not _ready_now(listener.sock, select.POLLIN):
            # An empty backlog. Linux would allocate a socket and a file only to free them
            # (4 µs here), and servers accept until AGAIN after every connection. Right after
            # poll_oneoff said readable, accept directly: that look would only repeat it.
            raise WasiError(Errno.AGAIN)
        # socket.accept() would ask the listener's family and type (enum conversions) each time.
        fd, peer = _os(listener.sock._accept)  # type: ignore[attr-defined]
        return socket.socket(*listener.kind, fileno=fd), peer

    # --- data ----------------------------------------------------------------------------

    async def sock_recv(self, fd: int, iovs: int, count: int, flags: int, out_len: int, out_flags: int) -> None:
        sock = self._socket(fd)
        bufs = self.mem.iovecs(iovs, count)
        self.mem.check(out_len, 4)
        self.mem.check(out_flags, 2)
        n, msg_flags, _ = await self._recv(sock, bufs, flags)
        self.mem.set_u32(out_len, n)
        self.mem.write(out_flags, _U16.pack(ROFLAG_TRUNCATED if msg_flags & _MSG_TRUNC else 0))

    async def _recv(self, sock: Socket, bufs: Buffers, flags: int) -> tuple[int, int, Any]:
        if flags & ~(RIFLAG_PEEK | RIFLAG_WAITALL):
            raise WasiError(Errno.INVAL)
        if flags == RIFLAG_WAITALL and not sock.datagram:
            return await self._recv_all(sock, bufs), 0, None
        host_flags = (_MSG_PEEK if flags & RIFLAG_PEEK else 0) | (_MSG_WAITALL if flags & RIFLAG_WAITALL else 0)
        n, msg_flags, addr = await self.ctx.blocking(sock, False, lambda: sock.recv(bufs, host_flags))
        if addr and sock.datagram:
            sock.peers.add((addr[0], addr[1]))
        return n, msg_flags, addr

    async def _recv_all(self, sock: Socket, bufs: Buffers) -> int:
        """WAITALL on a stream socket, which the host socket (non-blocking) would ignore. As on
        Linux, a blocking call returns once the buffers are full or the stream ends; when the
        timeout expires or an error comes after some data, it returns that data (the error
        shows on the next call). A non-blocking call returns what is there."""
        total, got = sum(map(len, bufs)), 0

        def fill() -> int:
            nonlocal got
            while got < total:
                n = sock.recv(span(bufs, got, total))[0]  # AGAIN when nothing more is there yet
                if not n:
                    break
                got += n
            return got

        try:
            return await self.ctx.blocking(sock, False, fill)
        except WasiError:
            if not got:
                raise
            return got

    async def sock_recv_from_v1(
        self, fd: int, iovs: int, count: int, addr: int, flags: int, out_len: int, out_flags: int
    ) -> None:
        sock = self._socket(fd)
        bufs = self.mem.iovecs(iovs, count)
        buf, length = _ADDRESS.unpack_from(self.mem.check(addr, 8), addr)
        n, msg_flags, peer = await self._recv(sock, bufs, flags)
        if peer:
            ip = ipaddress.ip_address(peer[0].split("%")[0])
            if length == 16 and ip.version == 4:
                # A 16-byte buffer for an IPv4 sender can only be crate 0.4.x's layout.
                self.mem.write(buf, _OLD_RECV_FROM.pack(_OLD_AF_INET, peer[1], ip.packed))
            else:
                self._write_address(addr, peer, storage=False)
        self.mem.set_u32(out_len, n)
        self.mem.write(out_flags, _U16.pack(ROFLAG_TRUNCATED if msg_flags & _MSG_TRUNC else 0))

    async def sock_recv_from_v2(
        self, fd: int, iovs: int, count: int, addr: int, flags: int, out_port: int, out_len: int, out_flags: int
    ) -> None:
        sock = self._socket(fd)
        bufs = self.mem.iovecs(iovs, count)
        _, length = _ADDRESS.unpack_from(self.mem.check(addr, 8), addr)
        n, msg_flags, peer = await self._recv(sock, bufs, flags)
        if peer:
            self._write_address(addr, peer, storage=length == _STORAGE)
            # Host byte order: what guests mean (WasmEdge writes network order, its bug #2491).
            self.mem.write(out_port, _U16.pack(peer[1]))
        self.mem.set_u32(out_len, n)
        self.mem.write(out_flags, _U16.pack(ROFLAG_TRUNCATED if msg_flags & _MSG_TRUNC else 0))

    async def sock_send(self, fd: int, iovs: int, count: int, flags: int, out_len: int) -> None:
        sock = self._socket(fd)
        if flags:
            raise WasiError(Errno.INVAL)
        bufs = self.mem.iovecs(iovs, count)
        self.mem.check(out_len, 4)
        sent = await self.ctx.blocking(sock, True, lambda: sock.send(bufs))
        self.mem.set_u32(out_len, sent)

    async def sock_send_to(
        self, fd: int, iovs: int, count: int, addr: int, port: int, flags: int, out_len: int
    ) -> None:
        await self._send_to(fd, iovs, count, addr, port, flags, out_len, storage=False)

    async def sock_send_to_v2(
        self, fd: int, iovs: int, count: int, addr: int, port: int, flags: int, out_len: int
    ) -> None:
        await self._send_to(fd, iovs, count, addr, port, flags, out_len, storage=True)

    async def _send_to(
        self, fd: int, iovs: int, count: int, addr: int, port: int, flags: int, out_len: int, storage: bool
    ) -> None:
        sock = self._socket(fd)
        if flags:
            raise WasiError(Errno.INVAL)
        family, ip = self._address(addr, storage)
        target = self._sockaddr(sock, family, ip, port)
        if (str(ip), port & 0xFFFF) not in sock.peers:
            self._check_outbound(ip, port & 0xFFFF, "send to")
        bufs = self.mem.iovecs(iovs, count)
        self.mem.check(out_len, 4)
        self._bind_unbound(sock, connecting=True)
        sent = await self.ctx.blocking(sock, True, lambda: sock.send(bufs, target))
        self.mem.set_u32(out_len, sent)

    def sock_shutdown(self, fd: int, how: int) -> None:
        sock = self._socket(fd)
        if how > 3:
            raise WasiError(Errno.INVAL)
        sock.io_seq += 1
        _os(sock.sock.shutdown, {0: socket.SHUT_RD, 1: socket.SHUT_RD, 2: socket.SHUT_WR, 3: socket.SHUT_RDWR}[how])

    # --- options and addresses ------------------------------------------------------------

    def sock_getsockopt(self, fd: int, level: int, name: int, flag: int, size_ptr: int) -> None:
        sock = self._socket(fd)
        if level != 0 or name not in _OPTIONS:
            raise WasiError(Errno.INVAL)
        host_level, host_name, kind = _OPTIONS[name]
        size = self.mem.u32(size_ptr)
        if kind == "type":
            data: bytes = U32.pack(_WASI_KIND[sock.sock.type])
        elif kind == "error":
            code = sock.sock.getsockopt(host_level, host_name)
            data = U32.pack(from_os(OSError(code, "")).errno if code else 0)
        elif kind == "timeval":
            seconds = sock.timeouts.get(host_name)
            whole = int(seconds or 0)
            data = _TIMEVAL.pack(whole, int(((seconds or 0) - whole) * 1e6))
        else:
            # Python takes at most 1 KiB (more than any option here needs); a guest may offer 4 GiB.
            raw: bytes = _os(lambda: sock.sock.getsockopt(host_level, host_name, min(max(size, 4), 1024)))
            data = raw if kind in ("bytes", "linger") else raw[:4]
        if size < len(data) and kind != "bytes":
            raise WasiError(Errno.INVAL)
        data = data[:size]
        self.mem.write(flag, data)
        self.mem.set_u32(size_ptr, len(data))

    def sock_setsockopt(self, fd: int, level: int, name: int, flag: int, size: int) -> None:
        sock = self._socket(fd)
        if level != 0 or name not in _OPTIONS:
            raise WasiError(Errno.INVAL)
        host_level, host_name, kind = _OPTIONS[name]
        raw = self.mem.read(flag, size)
        if kind in ("type", "error") or name == 13:
            raise WasiError(Errno.NOPROTOOPT)
        if kind == "timeval":
            if size < _TIMEVAL.size:
                raise WasiError(Errno.INVAL)
            sec, usec = _TIMEVAL.unpack_from(raw)
            sock.timeouts[host_name] = sec + usec / 1e6 if sec or usec else None
            return
        if kind == "int":
            if size < 4:
                raise WasiError(Errno.INVAL)
            value: int | bytes = int.from_bytes(raw[:4], "little", signed=True)
        elif kind == "linger":
            if size < _LINGER.size:
                raise WasiError(Errno.INVAL)
            value = struct.pack("ii", *_LINGER.unpack_from(raw))
        else:
            value = raw
        _os(sock.sock.setsockopt, host_level, host_name, value)

    def sock_getlocaladdr_v1(self, fd: int, addr: int, kind: int, port: int) -> None:
        sock = self._socket(fd)
        where = _os(sock.sock.getsockname)
        self._addr_v1(addr, kind, port, where, sock.guest_port)

    def sock_getpeeraddr_v1(self, fd: int, addr: int, kind: int, port: int) -> None:
        sock = self._socket(fd)
        self._addr_v1(addr, kind, port, _os(sock.sock.getpeername), None)

    def _addr_v1(self, addr: int, kind: int, port: int, where: tuple[Any, ...], guest_port: int | None) -> None:
        self.mem.check(kind, 4)
        self.mem.check(port, 4)
        family = self._write_address(addr, where, storage=False)
        self.mem.set_u32(kind, 4 if family == INET4 else 6)
        self.mem.set_u32(port, guest_port if guest_port is not None else where[1])

    def sock_getlocaladdr_v2(self, fd: int, addr: int, port: int) -> None:
        sock = self._socket(fd)
        where = _os(sock.sock.getsockname)
        self.mem.check(port, 4)
        self._write_address(addr, where, storage=True)
        self.mem.set_u32(port, sock.guest_port if sock.guest_port is not None else where[1])

    def sock_getpeeraddr_v2(self, fd: int, addr: int, port: int) -> None:
        where = _os(self._socket(fd).sock.getpeername)
        self.mem.check(port, 4)
        self._write_address(addr, where, storage=True)
        self.mem.set_u32(port, where[1])

    # --- name resolution -----------------------------------------------------------------

    async def sock_getaddrinfo(
        self, node: int, node_len: int, service: int, service_len: int, hints: int, res: int, max_len: int, out_len: int
    ) -> None:
        host = self.mem.read(node, node_len).rstrip(b"\0").decode("utf-8", "replace")
        port = self.mem.read(service, service_len).rstrip(b"\0").decode("utf-8", "replace")
        if not host and not port:
            raise WasiError(Errno.AINONAME)
        if max_len < 1:
            raise WasiError(Errno.AIMEMORY)
        flags, family, kind, proto = struct.unpack_from("<HBBB", self.mem.read(hints, 8))
        if flags & ~0x7F:
            raise WasiError(Errno.AIBADFLAG)
        if family not in (0, INET4, INET6):
            raise WasiError(Errno.AIFAMILY)
        if kind not in (0, DGRAM, STREAM) or proto not in (0, 1, 2):
            raise WasiError(Errno.NOSYS)
        query = (
            port or None,
            _FAMILY.get(family, 0),
            _KIND.get(kind, 0),
            {0: 0, 1: socket.IPPROTO_TCP, 2: socket.IPPROTO_UDP}[proto],
            _host_ai_flags(flags),
        )
        results = _local_answer(host, *query)
        if results is None:
            if not self.network.allows_lookup(host):
                hint = f"allow it with --allow-outbound {host}"
                self._warn_once("deny lookup", f"name lookup of {host!r} denied by network policy ({hint})")
                raise WasiError(Errno.AIFAIL)
            results = await self._resolve(host, *query)
        entry = self.mem.u32(res)
        written = 0
        for fam, sock_kind, sock_proto, canon, sockaddr in results[:max_len]:
            if entry == 0:
                break
            self._write_addrinfo(entry, fam, sock_kind, sock_proto, canon, sockaddr)
            written += 1
            entry = self.mem.u32(entry + 24)
        self.mem.set_u32(out_len, written)

    async def _resolve(self, host: str, port: str | None, family: int, kind: int, proto: int, flags: int) -> list[Any]:
        """getaddrinfo on a lookup thread, waited for through the context: a stop wakes the
        guest, and after ``RESOLVE_TIMEOUT`` seconds the lookup fails with AIAGAIN."""
        lookup = _Lookup(host, port, family, kind, proto, flags)
        try:
            deadline = self.ctx.clock() + RESOLVE_TIMEOUT
            while not lookup.done.is_set():
                remaining = deadline - self.ctx.clock()
                if remaining <= 0:
                    raise WasiError(Errno.AIAGAIN)
                await self.ctx.wait([lookup.ready], [], remaining)
        finally:
            self.ctx.forget((lookup.ready,))
            os.close(lookup.ready)
        if lookup.error is not None:
            raise _gai_error(lookup.error)
        return lookup.results

    def _write_addrinfo(
        self, entry: int, family: int, kind: int, proto: int, canon: str, sockaddr: tuple[Any, ...]
    ) -> None:
        _flags, _f, _k, _p, _len, addr_ptr, canon_ptr, _canon_len, nxt = _ADDRINFO.unpack_from(self.mem.read(entry, 28))
        wasi_family = _WASI_FAMILY.get(family, 0)
        proto_code = {socket.IPPROTO_TCP: 1, socket.IPPROTO_UDP: 2}.get(proto, 0)
        ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
        if ip.version == 4:
            native_len, data = 16, struct.pack(">H", sockaddr[1]) + ip.packed + bytes(8)
        else:
            native_len, data = (
                28,
                struct.pack(">HI", sockaddr[1], sockaddr[2]) + ip.packed + struct.pack("<I", sockaddr[3]),
            )
        canon_bytes = canon.encode() + b"\0" if canon and canon_ptr else b""
        if canon_bytes:
            self.mem.write(canon_ptr, canon_bytes)
        self.mem.write(
            entry,
            _ADDRINFO.pack(
                0,
                wasi_family,
                _WASI_KIND.get(kind, 0),
                proto_code,
                native_len,
                addr_ptr,
                canon_ptr,
                len(canon_bytes),
                nxt,
            ),
        )
        if addr_ptr:
            _fam, _dlen, data_ptr = _SOCKADDR.unpack_from(self.mem.read(addr_ptr, 12))
            self.mem.write(addr_ptr, _SOCKADDR.pack(wasi_family, len(data), data_ptr))
            if data_ptr:
                self.mem.write(data_ptr, data)


class _Lookup:
    """One getaddrinfo on a daemon thread (a lookup the guest gave up on never delays the
    host's exit), announced on a pipe the guest can wait on like on any fd. Each end of the
    pipe has one owner: the thread closes the write end, the guest the read end."""

    def __init__(self, *args: Any) -> None:
        if not _LOOKUP_SLOTS.acquire(blocking=False):
            raise WasiError(Errno.AIAGAIN)
        self.done = threading.Event()
        self.results: list[Any] = []
        self.error: Exception | None = None
        try:
            self.ready, self._signal = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            _LOOKUP_SLOTS.release()
            raise WasiError(Errno.AISYSTEM) from None
        threading.Thread(target=self._run, args=args, name="wasmhost-getaddrinfo", daemon=True).start()

    def _run(self, *args: Any) -> None:
        try:
            self.results = socket.getaddrinfo(*args)
        except (OSError, UnicodeError) as exc:
            self.error = exc
        finally:
            _LOOKUP_SLOTS.release()
            self.done.set()
            with contextlib.suppress(OSError):
                os.write(self._signal, b"\0")
            os.close(self._signal)


def _local_answer(host: str, port: str | None, family: int, kind: int, proto: int, flags: int) -> list[Any] | None:
    """getaddrinfo's answer where no query need leave the host, else None: no host (the
    wildcard or loopback address), an IP literal, or ``localhost`` and names under it, which
    are the loopback addresses (RFC 6761) whatever the resolver would say."""
    if not host:
        literals: tuple[str | None, ...] = (None,)
    elif host_name(host) == "localhost" or host_name(host).endswith(".localhost"):
        literals = ("127.0.0.1", "::1")
    else:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
        literals = (host,)
    results: list[Any] = []
    errors: list[Exception] = []
    for literal in literals:
        numeric = flags | socket.AI_NUMERICHOST if literal else flags
        try:
            results += socket.getaddrinfo(literal, port, family, kind, proto, numeric)
        except (OSError, UnicodeError) as exc:
            errors.append(exc)
    if not results:
        raise _gai_error(errors[0])
    return results


def _gai_error(exc: Exception) -> WasiError:
    """The guest's errno for a failed getaddrinfo."""
    if isinstance(exc, socket.gaierror):
        return WasiError(_GAI_ERRORS.get(exc.errno, Errno.AIFAIL))
    return WasiError(Errno.AINONAME if isinstance(exc, UnicodeError) else Errno.AIFAIL)


def _ready_now(sock: socket.socket, events: int) -> bool:
    """Whether ``poll(2)`` reports anything for ``events`` (errors and hang-ups included)."""
    poller = select.poll()
    poller.register(sock.fileno(), events)
    return bool(poller.poll(0))


_MAX_WARNINGS = 16  # distinct network warnings logged per guest
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_SIOCOUTQ = termios.TIOCOUTQ  # the same request on sockets: bytes sent and not yet acknowledged


def _show(addr: tuple[Any, ...]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in str(addr[0]) else f"{addr[0]}:{addr[1]}"


def _host_ai_flags(flags: int) -> int:
    table = [socket.AI_PASSIVE, socket.AI_CANONNAME, socket.AI_NUMERICHOST, socket.AI_NUMERICSERV,
             socket.AI_V4MAPPED, socket.AI_ALL, socket.AI_ADDRCONFIG]  # fmt: skip
    return sum(host for bit, host in enumerate(table) if flags & (1 << bit))


_GAI_ERRORS = {
    socket.EAI_AGAIN: Errno.AIAGAIN,
    socket.EAI_BADFLAGS: Errno.AIBADFLAG,
    socket.EAI_FAIL: Errno.AIFAIL,
    socket.EAI_FAMILY: Errno.AIFAMILY,
    socket.EAI_MEMORY: Errno.AIMEMORY,
    socket.EAI_NONAME: Errno.AINONAME,
    socket.EAI_SERVICE: Errno.AISERVICE,
    socket.EAI_SOCKTYPE: Errno.AISOCKTYPE,
    socket.EAI_SYSTEM: Errno.AISYSTEM,
    getattr(socket, "EAI_NODATA", -5): Errno.AINODATA,
    getattr(socket, "EAI_ADDRFAMILY", -9): Errno.AIADDRFAMILY,
}
