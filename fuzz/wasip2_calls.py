"""Fuzz target: any WASI 0.2 host function, with any arguments of its WIT type, over one fresh
instance's state.

The functions are those of the linking tables (``wasip2.linking.MODULES``), their WIT types read
from ``wasip2_world.wat``; an input may also drop a handle (``[resource-drop]...``). An input is:

    byte 0      number of calls - 1 (mod MAX_CALLS)
    per call    u16 call index (little endian), u8 n, then n bytes the arguments are drawn from
                (zeros past their end), so that a change to one call leaves the others alone

An instance starts with what a component has when it is served: preopens ``/rw`` and a
read-only ``/ro`` of a fresh sandbox, stdio, a network, a TCP and a UDP socket, header fields,
an incoming request with a body, and a response outparam. Its network reaches two peers on
loopback: a TCP server that answers every connection with an HTTP response, and a UDP echo.
A resource argument is a handle the instance holds, one it dropped, one of another resource
type, or one never issued. The loop runs a few rounds after each call, so that connections,
lookups and requests go on.

Every call runs with a deadline that has already passed: a call that would wait is cancelled
at once, as an abandoned call is. That, a trap or an exit ends the instance, which is then
closed. A finding is: an exception other than the traps the host raises on purpose
(``TRAPS``); a result not of the function's WIT type; an own handle in a result that is not a
new handle of that resource, or an own argument a call returned without taking; a handle that
resolves to a closed resource; a task, or a host descriptor, left behind by a closed instance.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import re
import socket
import struct
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from wasmtime import component as wc

from wasmhost._native.component import Err, Ok, compile_component
from wasmhost._native.core import engine, wat2wasm
from wasmhost.host import Preopen
from wasmhost.net.policy import Network, Rule
from wasmhost.wasip2 import cli, clocks, filesystem, http, io, outgoing, poll, sockets, streams
from wasmhost.wasip2.context import GuestExit, TooLarge, Wasi, WasiConfig
from wasmhost.wasip2.linking import MODULES
from wasmhost.wasip2.table import ResourceError

from .scratch import Scratch, open_fds

MAX_CALLS = 16
WORLD = Path(__file__).with_name("wasip2_world.wat")
#: The exceptions host functions raise on purpose: the guest broke a rule, and the binding layer
#: turns the exception into a trap that names the function and the reason.
TRAPS: tuple[tuple[type[BaseException], str], ...] = (
    (ResourceError, ""),  # a handle the guest does not hold, or of another resource type
    (TooLarge, ""),  # more asked of one call than the host hands out at once
    (ValueError, r"^poll needs at least one pollable$"),
    (ValueError, r"^send of \d+ datagrams, but check-send permitted \d+$"),
    (RuntimeError, r"^response-outparam\.set called twice$"),
)


class _Unissued:
    """The class of a resource wasmhost never issues (there is no terminal)."""


#: The Python class of each resource: what a valid handle of that resource names.
CLASSES: dict[str, type] = {
    "terminal-input": _Unissued, "terminal-output": _Unissued,
    "error": io.IoError, "pollable": poll.Pollable, "input-stream": streams.InputStream,
    "output-stream": streams.OutputStream, "descriptor": filesystem.Descriptor,
    "directory-entry-stream": filesystem.DirectoryEntries, "network": sockets.InstanceNetwork,
    "tcp-socket": sockets.TcpSocket, "udp-socket": sockets.UdpSocket,
    "incoming-datagram-stream": sockets.IncomingDatagrams, "outgoing-datagram-stream": sockets.OutgoingDatagrams,
    "resolve-address-stream": sockets.Lookup, "fields": http.Fields, "incoming-request": http.IncomingRequest,
    "outgoing-request": outgoing.OutgoingRequest, "request-options": outgoing.RequestOptions,
    "response-outparam": http.ResponseOutparam, "incoming-response": outgoing.IncomingResponse,
    "incoming-body": http.IncomingBody, "future-trailers": http.FutureTrailers,
    "outgoing-response": http.OutgoingResponse, "outgoing-body": http.OutgoingBody,
    "future-incoming-response": outgoing.FutureResponse,
}  # fmt: skip
#: Strings worth trying: paths in and out of the sandbox, header names, methods, addresses.
WORDS = (
    "file.txt", "", "sub", "link", "new", "new/deeper", ".", "..", "../rw/file.txt", "/", "/etc/passwd",
    "sub/../file.txt", "link/x", "caf\xe9", "x" * 300, "a\0b", "content-type", "Content-Length", "host",
    "transfer-encoding", "x-custom", "bad name", "GET", "get", "https", "127.0.0.1", "::1", "localhost",
)  # fmt: skip
_SURROGATE = re.compile("[\ud800-\udfff]")  # what no UTF-8 string holds
_BYTE_SIZES = (4096, 4097, 65536, 65537, 1 << 20, (1 << 20) + 1, 1, 0)
_ROUNDS = 8  # loop rounds after each call: enough for a loopback connect to complete
_SETTLE = 40  # most loop rounds for a closed instance's tasks to end


class Source:
    """The bytes one call's arguments are drawn from; zeros past their end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        part = self.data[self.pos : self.pos + size]
        self.pos += size
        return part.ljust(size, b"\0")

    def byte(self) -> int:
        return self.take(1)[0]


# --- argument shapes, from the WIT types ------------------------------------------------------


class Shape:
    """A WIT type: draws an argument of it, and checks that a result is one."""

    def draw(self, src: Source, inst: Instance) -> Any:
        raise NotImplementedError

    def check(self, value: Any, inst: Instance) -> None:
        raise NotImplementedError


@attrs.frozen
class Int(Shape):
    """Any value of the width, often an edge: 0, the top, powers of two, the sizes and ports the
    host cares about. Nothing wider reaches a host function: the binding layer reads fixed-width
    fields, so a guest's out-of-range value is one of these (a length beyond any buffer, an
    offset past any file, an instant that overflows)."""

    bits: int
    signed: bool

    @property
    def bounds(self) -> tuple[int, int]:
        return (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1) if self.signed else (0, (1 << self.bits) - 1)

    def draw(self, src: Source, inst: Instance) -> int:
        lo, hi = self.bounds
        if self.bits > 8 and src.byte() < 0x80:
            edges = [0, 1, 2, *inst.ports, hi, hi - 1, lo, 100, 4096, 4097, 65536, 1 << 31, 1 << 32, 10**9, -1]
            fitting = [v for v in edges if lo <= v <= hi]
            return fitting[src.byte() % len(fitting)]
        raw = int.from_bytes(src.take(self.bits // 8), "little")
        return raw - (1 << self.bits) if self.signed and raw > hi else raw

    def check(self, value: Any, inst: Instance) -> None:
        lo, hi = self.bounds
        assert isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi, f"{value!r} is no {self}"


@attrs.frozen
class Bool(Shape):
    def draw(self, src: Source, inst: Instance) -> bool:
        return bool(src.byte() & 1)

    def check(self, value: Any, inst: Instance) -> None:
        assert isinstance(value, bool), f"{value!r} is no bool"


@attrs.frozen
class String(Shape):
    """A word from ``WORDS`` (and the TCP peer's authority), or up to 127 bytes read as UTF-8."""

    def draw(self, src: Source, inst: Instance) -> str:
        tag = src.byte()
        if tag < 0x80:
            return inst.words[tag % len(inst.words)]
        return src.take(tag & 0x7F).decode("utf-8", "replace")

    def check(self, value: Any, inst: Instance) -> None:
        assert isinstance(value, str) and not _SURROGATE.search(value), f"{value!r} is no string (UTF-8)"


@attrs.frozen
class Bytes(Shape):
    """``list<u8>``: up to 239 bytes from the input, or a size at some limit (zero-filled)."""

    def draw(self, src: Source, inst: Instance) -> bytes:
        tag = src.byte()
        return src.take(tag if tag < 0xF0 else _BYTE_SIZES[tag & 7])

    def check(self, value: Any, inst: Instance) -> None:
        assert isinstance(value, bytes), f"{value!r} is no list<u8>"


@attrs.frozen
class List(Shape):
    item: Shape

    def draw(self, src: Source, inst: Instance) -> list[Any]:
        tag = src.byte()
        return [self.item.draw(src, inst) for _ in range(tag % 5 if tag < 0xF8 else 65)]

    def check(self, value: Any, inst: Instance) -> None:
        assert isinstance(value, list), f"{value!r} is no list"
        for item in value:
            self.item.check(item, inst)


@attrs.frozen
class Tuple(Shape):
    """A tuple or a record (both are Python tuples in field order)."""

    items: tuple[Shape, ...]

    def draw(self, src: Source, inst: Instance) -> tuple[Any, ...]:
        return tuple(item.draw(src, inst) for item in self.items)

    def check(self, value: Any, inst: Instance) -> None:
        assert isinstance(value, tuple) and len(value) == len(self.items), f"{value!r} is no {len(self.items)}-tuple"
        for item, shape in zip(value, self.items, strict=True):
            shape.check(item, inst)


@attrs.frozen
class Variant(Shape):
    """``(case, payload)``; a result may name a case without payload alone."""

    cases: tuple[tuple[str, Shape | None], ...]

    def draw(self, src: Source, inst: Instance) -> tuple[str, Any]:
        name, payload = self.cases[src.byte() % len(self.cases)]
        return name, payload.draw(src, inst) if payload is not None else None

    def check(self, value: Any, inst: Instance) -> None:
        name, payload = (value, None) if isinstance(value, str) else value
        shape = dict(self.cases)[name]
        if shape is None:
            assert payload is None, f"case {name} has no payload, got {payload!r}"
        else:
            shape.check(payload, inst)


@attrs.frozen
class Enum(Shape):
    names: tuple[str, ...]

    def draw(self, src: Source, inst: Instance) -> str:
        return self.names[src.byte() % len(self.names)]

    def check(self, value: Any, inst: Instance) -> None:
        assert value in self.names, f"{value!r} is none of {self.names}"


@attrs.frozen
class Flags(Shape):
    names: tuple[str, ...]

    def draw(self, src: Source, inst: Instance) -> frozenset[str]:
        bits = int.from_bytes(src.take((len(self.names) + 7) // 8), "little")
        return frozenset(name for i, name in enumerate(self.names) if bits >> i & 1)

    def check(self, value: Any, inst: Instance) -> None:
        assert isinstance(value, frozenset) and value <= set(self.names), f"{value!r} is no set of {self.names}"


@attrs.frozen
class Option(Shape):
    inner: Shape

    def draw(self, src: Source, inst: Instance) -> Any:
        return self.inner.draw(src, inst) if src.byte() & 1 else None

    def check(self, value: Any, inst: Instance) -> None:
        if value is not None:
            self.inner.check(value, inst)


@attrs.frozen
class Result(Shape):
    ok: Shape | None
    err: Shape | None

    def draw(self, src: Source, inst: Instance) -> Ok | Err:
        kind, shape = (Err, self.err) if src.byte() & 1 else (Ok, self.ok)
        return kind(shape.draw(src, inst) if shape is not None else None)

    def check(self, value: Any, inst: Instance) -> None:
        assert isinstance(value, (Ok, Err)), f"{value!r} is no result"
        shape = self.ok if isinstance(value, Ok) else self.err
        if shape is None:
            assert value.value is None, f"{value!r} carries a payload its case has not"
        else:
            shape.check(value.value, inst)


@attrs.frozen
class Handle(Shape):
    """``own<resource>`` or ``borrow<resource>``: a rep."""

    resource: str
    owned: bool

    def draw(self, src: Source, inst: Instance) -> int:
        rep = inst.handle(CLASSES[self.resource], src.byte(), src.byte())
        if self.owned:
            inst.given.append(rep)
        return rep

    def check(self, value: Any, inst: Instance) -> None:
        assert self.owned, "a result holds a borrow"
        item = dict(inst.wasi.table.items()).get(value)
        assert isinstance(item, CLASSES[self.resource]), f"own<{self.resource}> {value!r} names {item!r}"
        assert value not in inst.held, f"own<{self.resource}> {value} was already handed out"


_SCALARS: dict[type, Shape] = {
    wc.Bool: Bool(), wc.String: String(), wc.U8: Int(8, False), wc.U16: Int(16, False), wc.U32: Int(32, False),
    wc.U64: Int(64, False), wc.S8: Int(8, True), wc.S16: Int(16, True), wc.S32: Int(32, True), wc.S64: Int(64, True),
}  # fmt: skip


def shape(ty: Any, resources: list[tuple[str, wc.ResourceType]]) -> Shape:
    """The shape of a wasmtime type description (``resources``: name and type of each resource)."""
    if type(ty) in _SCALARS:
        return _SCALARS[type(ty)]
    if isinstance(ty, wc.ListType):
        element = ty.element
        return Bytes() if isinstance(element, wc.U8) else List(shape(element, resources))
    if isinstance(ty, wc.RecordType):
        return Tuple(tuple(shape(field, resources) for _name, field in ty.fields))
    if isinstance(ty, wc.TupleType):
        return Tuple(tuple(shape(item, resources) for item in ty.elements))
    if isinstance(ty, wc.VariantType):
        return Variant(tuple((name, None if t is None else shape(t, resources)) for name, t in ty.cases))
    if isinstance(ty, wc.EnumType):
        return Enum(tuple(ty.names))
    if isinstance(ty, wc.FlagsType):
        return Flags(tuple(ty.names))
    if isinstance(ty, wc.OptionType):
        return Option(shape(ty.payload, resources))
    if isinstance(ty, wc.ResultType):
        ok, err = ty.ok, ty.err
        return Result(None if ok is None else shape(ok, resources), None if err is None else shape(err, resources))
    if isinstance(ty, (wc.OwnType, wc.BorrowType)):
        name = next(name for name, known in resources if known == ty.ty)
        return Handle(name, isinstance(ty, wc.OwnType))
    raise TypeError(f"{type(ty).__name__}: a WIT type wasip2_world.wat did not use before")


# --- the calls ----------------------------------------------------------------------------------


@attrs.frozen
class Call:
    """A host function as the linker defines it, and the shapes of its parameters and result."""

    name: str  # interface#function
    func: Callable[..., Any]
    params: tuple[Shape, ...]
    result: Shape | None


def _drop(wasi: Wasi, rep: int) -> None:
    """What the binding layer calls when the guest drops a handle."""
    wasi.drop_resource(rep)


def calls() -> list[Call]:
    """Every host function of the linking tables with its WIT type, then a drop per resource."""
    component = compile_component(wat2wasm(WORLD.read_text()), fuel=False)
    functions: dict[tuple[str, str], wc.FuncType] = {}
    resources: list[tuple[str, wc.ResourceType]] = []
    for interface, extern in component.type.imports(engine(False)).items():
        for name, item in extern.ty.exports(engine(False)).items():
            ty = item.ty
            if isinstance(ty, wc.FuncType):
                functions[interface, name] = ty
            elif isinstance(ty, wc.ResourceType) and (interface, name) in {r for m in MODULES for r in m.RESOURCES}:
                resources.append((name, ty))
    found = []
    for module in MODULES:
        for (interface, name), func in module.FUNCTIONS.items():
            ty = functions[interface, name]  # a KeyError: wasip2_world.wat lacks a newer function
            params = tuple(shape(param, resources) for _name, param in ty.params)
            result = None if ty.result is None else shape(ty.result, resources)
            found.append(Call(f"{interface}#{name}", func, params, result))
        for interface, name in module.RESOURCES:
            found.append(Call(f"{interface}#[resource-drop]{name}", _drop, (Handle(name, owned=True),), None))
    return sorted(found, key=lambda call: call.name)


def decode(data: bytes, table: list[Call]) -> list[tuple[Call, bytes]]:
    """The calls an input makes, each with the bytes its arguments are drawn from."""
    found: list[tuple[Call, bytes]] = []
    pos = 1
    for _ in range(data[0] % MAX_CALLS + 1 if data else 0):
        if pos + 3 > len(data):
            break
        index, size = struct.unpack_from("<HB", data, pos)
        found.append((table[index % len(table)], data[pos + 3 : pos + 3 + size]))
        pos += 3 + size
    return found


def encode(made: list[tuple[str, bytes]], table: list[Call]) -> bytes:
    """An input making ``made`` (call name, argument bytes): how seeds are written."""
    index = {call.name: i for i, call in enumerate(table)}
    out = bytearray([len(made) - 1])
    for name, args in made:
        out += struct.pack("<HB", index[name], len(args)) + args
    return bytes(out)


# --- one instance -------------------------------------------------------------------------------


class Peers:
    """The hosts an instance's network reaches, on the scratch loop: a TCP server answering every
    connection with one HTTP response, and a UDP socket echoing every datagram."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nhello"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.answering: set[asyncio.Task[Any]] = set()
        self.server = loop.run_until_complete(asyncio.start_server(self._answer, "127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        loop.add_reader(self.udp, self._echo)
        self.ports = (self.server.sockets[0].getsockname()[1], self.udp.getsockname()[1])
        loopback = ipaddress.ip_network("127.0.0.1/32")
        self.network = Network(bind_address="127.0.0.1", outbound=tuple(Rule(loopback, port) for port in self.ports))

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.answering.add(task)
        try:
            writer.write(self.ANSWER)
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            writer.close()
            self.answering.discard(task)

    def _echo(self) -> None:
        try:
            data, sender = self.udp.recvfrom(65536)
            self.udp.sendto(data, sender)
        except OSError:
            return

    def close(self) -> None:
        self.loop.remove_reader(self.udp)
        self.udp.close()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())


class _Host(Scratch):
    """The per-process part: the scratch loop and sandbox, the peers and the call table."""

    def __init__(self) -> None:
        super().__init__()
        self.peers = Peers(self.loop)
        self.calls = calls()
        peer_fds = [sock.fileno() for sock in self.peers.server.sockets] + [self.peers.udp.fileno()]
        #: The descriptors of what outlives every input (the peers' sockets): none may be closed by one.
        self.lasting = {entry for entry in open_fds() if int(entry.split(" ", 1)[0]) in peer_fds}

    def close(self) -> None:
        self.peers.close()
        super().close()


def _discard(_data: bytes) -> None:
    return None


async def _trailers() -> list[tuple[bytes, bytes]]:
    return [(b"x-trailer", b"1")]


async def _rounds(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def _expired(call: Call, wasi: Wasi, args: list[Any]) -> Any:
    """Run a call whose deadline has passed: it ends if it needs no wait, else it is cancelled."""

    async def invoke() -> Any:
        value = call.func(wasi, *args)
        return await value if inspect.isawaitable(value) else value

    task = asyncio.ensure_future(invoke())
    asyncio.get_running_loop().call_soon(task.cancel)  # after the call's first step
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done, f"{call.name} went on waiting after it was cancelled"
    return task.result()


def _trap(exc: BaseException) -> bool:
    return any(type(exc) is kind and re.search(reason, str(exc)) for kind, reason in TRAPS)


def _closed(item: object) -> bool:
    """Whether the host side of a resource is gone: its fd or socket closed, its task cancelled."""
    if isinstance(item, filesystem.Descriptor):
        return item.fd < 0
    if isinstance(item, (filesystem.FileInput, filesystem.FileOutput)):
        return _closed(item.descriptor)
    if isinstance(item, (sockets.TcpSocket, sockets.UdpSocket)):
        return item.sock is not None and item.sock.fileno() < 0
    if isinstance(item, (sockets.IncomingDatagrams, sockets.OutgoingDatagrams)):
        return _closed(item.udp)
    if isinstance(item, poll.Pollable):
        return _closed(item.source)
    if isinstance(item, poll.TaskReadiness):
        return item.task.cancelled()
    return False


class Instance:
    """One instance's WASI state, set up as a served component's is, and the handles it was given."""

    def __init__(self, host: _Host, root: Path) -> None:
        self.loop = host.loop
        self.peers = host.peers
        self.ports = host.peers.ports
        self.words = (*WORDS, f"127.0.0.1:{self.ports[0]}")
        config = WasiConfig(
            args=("guest", "arg"), env=(("K", "V"),), stdout=_discard, stderr=_discard, network=host.peers.network,
            preopens=(Preopen("/rw", root / "rw"), Preopen("/ro", root / "ro", read_only=True)),
        )  # fmt: skip
        self.wasi = Wasi(config)
        self.issued: set[int] = set()
        self.held: set[int] = set()  # the reps held before the current call
        self.given: list[int] = []  # the own handles the current call was given
        self.tasks = asyncio.all_tasks(self.loop)
        self.loop.run_until_complete(self._start())
        self._note()

    async def _start(self) -> None:
        wasi, table = self.wasi, self.wasi.table
        filesystem.get_directories(wasi)
        for make in (cli.get_stdin, cli.get_stdout, cli.get_stderr, sockets.instance_network, http.fields_new):
            make(wasi)
        sockets.create_tcp_socket(wasi, "ipv4")
        sockets.create_udp_socket(wasi, "ipv4")
        headers = http.Fields([("content-type", b"text/plain"), ("x-a", b"1"), ("x-a", b"2")], mutable=False)
        chunks = [b"request body"]

        async def read() -> bytes:
            return chunks.pop() if chunks else b""

        body = http.IncomingBody(read, _trailers)
        table.push(http.IncomingRequest("POST", "/upload?x=1", "http", "example.com", headers, body))
        self.outparam = http.ResponseOutparam()
        table.push(self.outparam)

    def _note(self) -> None:
        self.held = {rep for rep, _item in self.wasi.table.items()}
        self.issued |= self.held

    def handle(self, kind: type, category: int, index: int) -> int:
        """A rep for a handle argument: mostly one held of ``kind`` (``index`` 0: the newest),
        else one dropped, one of another kind, or one never issued (also where there is none)."""
        items, pick = self.wasi.table.items(), category % 8
        if pick < 5:
            pool = [rep for rep, item in items if isinstance(item, kind)]
        elif pick == 5:
            pool = sorted(self.issued - self.held)
        else:
            pool = [rep for rep, item in items if not isinstance(item, kind)] if pick == 6 else []
        if pool:
            return pool[-1 - index % len(pool)]
        return (0, max(self.issued, default=0) + 1 + index, 0xFFFF_FFFF)[index % 3]

    def call(self, call: Call, data: bytes) -> str:
        """Make one call; its outcome, if the guest could go on or ends legitimately."""
        self.given = []
        src = Source(data)
        args = [param.draw(src, self) for param in call.params]
        try:
            value = self.loop.run_until_complete(_expired(call, self.wasi, args))
        except asyncio.CancelledError:
            return "would wait"
        except GuestExit:
            return "exit"
        except Exception as exc:
            if not _trap(exc):
                raise
            return "trap"
        finally:
            self.loop.run_until_complete(_rounds(_ROUNDS))
        if call.result is not None:
            call.result.check(value, self)
        left = [rep for rep in self.given if rep in dict(self.wasi.table.items())]
        assert not left, f"{call.name} returned without taking its own argument {left}"
        self.check()
        return "err" if isinstance(value, Err) else "ok"

    def check(self) -> None:
        """No handle resolves to a closed resource, and a new one gets a rep never issued."""
        for rep, item in self.wasi.table.items():
            assert not _closed(item), f"handle {rep} names a closed {type(item).__name__}"
        self._note()
        fresh = self.wasi.table.push(None)
        assert fresh not in self.issued, f"rep {fresh} handed out twice"
        self.wasi.table.drop(fresh)

    def close(self) -> None:
        """Close the instance; every task it started must end, and (the caller checks) every fd close."""
        self.wasi.close()
        answered = self.outparam.future
        if answered.done() and not answered.cancelled():
            answered.exception()  # the front end's part: an error-code answer was retrieved
        self.loop.run_until_complete(self._settle())
        left = self._left()
        for task in left:
            task.cancel()
        if left:
            self.loop.run_until_complete(asyncio.wait(left))
        assert not left, f"tasks left running by a closed instance: {left}"

    def _left(self) -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks(self.loop) - self.tasks - self.peers.answering

    async def _settle(self) -> None:
        ending = self._left()
        for _ in range(_SETTLE):
            if all(task.done() for task in ending):
                return
            await asyncio.sleep(0)


_host: _Host | None = None


def host() -> _Host:
    global _host
    if _host is None:
        _host = _Host()
    return _host


def _run(made: _Host, root: Path, data: bytes) -> list[str]:
    instance = Instance(made, root)
    outcomes = []
    try:
        for call, args in decode(data, made.calls):
            outcomes.append(outcome := instance.call(call, args))
            if outcome in ("would wait", "trap", "exit"):
                break
    finally:
        instance.close()
    for task in list(made.peers.answering):
        task.cancel()
    made.loop.run_until_complete(_rounds(4))  # transports close a round after they are told to
    return outcomes


def one_input(data: bytes) -> list[str]:
    """Run an input; the outcome of each call made (for the property tests' statistics)."""
    made = host()
    root = made.sandbox()
    before = open_fds()
    left: list[Any] = []  # objects that closed only as they were collected (ResourceWarning)
    hook, sys.unraisablehook = sys.unraisablehook, left.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            outcomes = _run(made, root, data)
    finally:
        sys.unraisablehook = hook
    assert not left, f"left to the garbage collector: {[str(u.exc_value) for u in left]}"
    now, names = open_fds(), [c.name for c, _ in decode(data, made.calls)]
    assert not now - before, f"host descriptors {sorted(now - before)} left by {names}"
    assert made.lasting <= now, f"host descriptors {sorted(made.lasting - now)} closed by {names}"
    return outcomes


# --- seeds ----------------------------------------------------------------------------------------
# Argument bytes as the shapes draw them: a handle is (0, n), the nth newest one held.

Made = list[tuple[str, bytes]]
_HELD = b"\0\0"
_NEWEST_BUT_ONE = b"\0\1"


def _u64(value: int) -> bytes:
    return b"\xff" + value.to_bytes(8, "little")


def _peer(port: int) -> bytes:
    """An ``ip-socket-address``: 127.0.0.1 and an edge port (3: the TCP peer's, 4: the UDP peer's)."""
    return b"\0" + bytes([0, port, 127, 0, 0, 1])


def _bytes(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def _word(word: str) -> bytes:
    return bytes([WORDS.index(word)])


_AUTHORITY = bytes([len(WORDS)])  # the word naming the TCP peer
_FS, _STREAMS, _TCP, _UDP = filesystem.TYPES + "#", io.STREAMS + "#", sockets.TCP + "#", sockets.UDP + "#"
_HTTP, _POLL = http.TYPES + "#", io.POLL + "#"
_FUTURE: Made = [
    (_HTTP + "[constructor]outgoing-request", _HELD),
    (_HTTP + "[method]outgoing-request.set-authority", _HELD + b"\x01" + _AUTHORITY),
    (outgoing.HANDLER + "#handle", _HELD + b"\0"),
]
_DATAGRAMS: Made = [
    (_UDP + "[method]udp-socket.start-bind", _HELD + _HELD + b"\0" + bytes(6)),  # 0.0.0.0:0
    (_UDP + "[method]udp-socket.finish-bind", _HELD),
    (_UDP + "[method]udp-socket.stream", _HELD + b"\x01" + _peer(4)),
]
#: How an instance comes to hold a resource it does not start with (the newest of its kind).
_MAKE: dict[str, Made] = {
    "pollable": [(clocks.MONOTONIC + "#subscribe-duration", _u64(0))],
    "error": [(_STREAMS + "[method]output-stream.blocking-write-and-flush", _HELD + b"\xf1")],  # 4097 bytes
    "directory-entry-stream": [(_FS + "[method]descriptor.read-directory", _NEWEST_BUT_ONE)],
    "resolve-address-stream": [(sockets.LOOKUP + "#resolve-addresses", _HELD + _word("127.0.0.1"))],
    "incoming-datagram-stream": _DATAGRAMS,
    "outgoing-datagram-stream": _DATAGRAMS,
    "incoming-body": [(_HTTP + "[method]incoming-request.consume", _HELD)],
    "future-trailers": [
        (_HTTP + "[method]incoming-request.consume", _HELD),
        (_HTTP + "[static]incoming-body.finish", _HELD),
    ],
    "outgoing-request": _FUTURE[:1],
    "request-options": [(_HTTP + "[constructor]request-options", b"")],
    "future-incoming-response": _FUTURE,
    "incoming-response": [
        *_FUTURE,
        (_HTTP + "[method]future-incoming-response.subscribe", _HELD),  # the loop runs meanwhile
        (_HTTP + "[method]future-incoming-response.get", _HELD),
    ],
    "outgoing-response": [(_HTTP + "[constructor]outgoing-response", _HELD)],
    "outgoing-body": [
        (_HTTP + "[constructor]outgoing-response", _HELD),
        (_HTTP + "[method]outgoing-response.body", _HELD),
    ],
}
_SEQUENCES: dict[str, Made] = {
    "open-read": [
        (_FS + "[method]descriptor.open-at", _NEWEST_BUT_ONE + b"\0" + _word("file.txt") + b"\0\x01"),
        (_FS + "[method]descriptor.read-via-stream", _HELD + _u64(0)),
        (_STREAMS + "[method]input-stream.blocking-read", _HELD + _u64(100)),
        (_STREAMS + "[method]input-stream.skip", _HELD + _u64(1 << 40)),
    ],
    "create-write-stat": [
        (_FS + "[method]descriptor.open-at", _NEWEST_BUT_ONE + b"\0" + _word("new") + b"\x01\x03"),
        (_FS + "[method]descriptor.write-via-stream", _HELD + _u64(0)),
        (_STREAMS + "[method]output-stream.check-write", _HELD),
        (_STREAMS + "[method]output-stream.write", _HELD + _bytes(b"hello")),
        (_STREAMS + "[method]output-stream.blocking-flush", _HELD),
        (_FS + "[method]descriptor.stat", _HELD),
    ],
    "stream-outlives-descriptor": [
        (_FS + "[method]descriptor.open-at", _NEWEST_BUT_ONE + b"\0" + _word("file.txt") + b"\0\x03"),
        (_FS + "[method]descriptor.write-via-stream", _HELD + _u64(0)),
        (_FS + "[resource-drop]descriptor", _HELD),
        (_STREAMS + "[method]output-stream.write", _HELD + _bytes(b"after")),
    ],
    "list-directory": [
        *_MAKE["directory-entry-stream"],
        *[(_FS + "[method]directory-entry-stream.read-directory-entry", _HELD)] * 6,
    ],
    "tcp-connect": [
        (_TCP + "[method]tcp-socket.start-connect", _HELD + _HELD + _peer(3)),
        (_TCP + "[method]tcp-socket.finish-connect", _HELD),
        (_STREAMS + "[method]input-stream.read", _HELD + _u64(4096)),
        (_STREAMS + "[method]output-stream.blocking-write-and-flush", _HELD + _bytes(b"GET / HTTP/1.1\r\n\r\n")),
        (_TCP + "[method]tcp-socket.shutdown", _HELD + b"\x02"),
        (_TCP + "[method]tcp-socket.remote-address", _HELD),
    ],
    "udp-echo": [
        *_DATAGRAMS,
        (_UDP + "[method]outgoing-datagram-stream.check-send", _HELD),
        (_UDP + "[method]outgoing-datagram-stream.send", _HELD + b"\x01" + _bytes(b"ping") + b"\0"),
        (_UDP + "[method]incoming-datagram-stream.receive", _HELD + _u64(4)),
    ],
    "http-fetch": [
        *_MAKE["incoming-response"],
        (_HTTP + "[method]incoming-response.consume", _HELD),
        (_HTTP + "[method]incoming-body.stream", _HELD),
        (_STREAMS + "[method]input-stream.read", _HELD + _u64(100)),
    ],
    "http-request": [
        *_MAKE["incoming-body"],
        (_HTTP + "[method]incoming-body.stream", _HELD),
        *[(_STREAMS + "[method]input-stream.read", _HELD + _u64(100))] * 3,  # starts, gets, ends
        (_HTTP + "[static]incoming-body.finish", _NEWEST_BUT_ONE),  # the body, not its stream
        (_HTTP + "[method]future-trailers.get", _HELD),
    ],
    "http-respond": [
        *_MAKE["outgoing-body"],
        (_HTTP + "[method]outgoing-body.write", _HELD),
        (_STREAMS + "[method]output-stream.blocking-write-and-flush", _HELD + _bytes(b"hello")),
        (_HTTP + "[static]outgoing-body.finish", _HELD + b"\0"),
        (_HTTP + "[static]response-outparam.set", _HELD + b"\0" + _HELD),
    ],
    "poll-timer": [
        *_MAKE["pollable"],
        (_POLL + "poll", b"\x01" + _HELD),
        (_POLL + "[method]pollable.block", _HELD),
    ],
}


def _file_name(call: str) -> str:
    return call.replace("wasi:", "").replace("@0.2.0", "").replace("/", ".")


def preamble(call: Call) -> Made:
    """The calls that make the resource ``call`` works on (its first handle), when an instance
    does not start with one."""
    handles = [param.resource for param in call.params if isinstance(param, Handle)]
    return _MAKE.get(handles[0], []) if handles else []


def seeds() -> dict[str, bytes]:
    """Each call once with zeroed arguments (a handle: the newest held), after its ``preamble``;
    then a few sequences."""
    table = host().calls
    out = {_file_name(call.name): encode([*preamble(call), (call.name, bytes(16))], table) for call in table}
    out.update({name: encode(made, table) for name, made in _SEQUENCES.items()})
    return out
