"""The network policy holds against hostile WAT guests on real sockets: implicit binds,
IPv4-mapped and NAT64 addresses, and name lookups (issue 12, items 3 to 5)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wasmhost import Host, Instance, Module
from wasmhost.net.policy import Network, PortMapping, Rule
from wasmhost.wasi.abi import Errno

INET4, INET6 = 1, 2
DGRAM, STREAM = 1, 2

# A guest that opens a socket, does one ACTION, then writes its local address to stdout
# (16 address bytes, kind u32, port u32) with V1 sock_getlocaladdr. A failing call exits
# with 100 + its errno. Memory: 100 fd, 200 WasiAddress -> 300 (peer), 240 WasiAddress -> 320
# (local), 400 kind, 404 port, 500 iovecs, 540 payload iovec -> 600 "hello".
GUEST = """
(module
  (import "wasi_snapshot_preview1" "sock_open" (func $open (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_listen" (func $listen (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_connect" (func $connect (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send_to"
    (func $send_to (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_getlocaladdr" (func $local (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 300) "PEER")
  (data (i32.const 600) "hello")
  (func $check (param i32) (if (local.get 0) (then (call $exit (i32.add (i32.const 100) (local.get 0))))))
  (func (export "_start")
    (call $check (call $open (i32.const FAMILY) (i32.const KIND) (i32.const 100)))
    (i32.store (i32.const 200) (i32.const 300))
    (i32.store (i32.const 204) (i32.const PEER_LEN))
    (i32.store (i32.const 540) (i32.const 600))
    (i32.store (i32.const 544) (i32.const 5))
    ACTION
    (i32.store (i32.const 240) (i32.const 320))
    (i32.store (i32.const 244) (i32.const 16))
    (call $check (call $local (i32.load (i32.const 100)) (i32.const 240) (i32.const 400) (i32.const 404)))
    (i32.store (i32.const 500) (i32.const 320))
    (i32.store (i32.const 504) (i32.const 16))
    (i32.store (i32.const 508) (i32.const 400))
    (i32.store (i32.const 512) (i32.const 8))
    (drop (call $write (i32.const 1) (i32.const 500) (i32.const 2) (i32.const 520)))))
"""
LISTEN = "(call $check (call $listen (i32.load (i32.const 100)) (i32.const 16)))"
CONNECT = "(call $check (call $connect (i32.load (i32.const 100)) (i32.const 200) (i32.const PORT)))"
SEND_TO = """(call $check (call $send_to (i32.load (i32.const 100)) (i32.const 540) (i32.const 1)
                (i32.const 200) (i32.const PORT) (i32.const 0) (i32.const 560)))"""

Local = tuple[str, int]


def _run(network: Network, action: str, family: int, kind: int, peer: str = "0.0.0.0", port: int = 0) -> Any:
    """Run GUEST; returns (exit code, local address or None, the instance's listening list)."""
    raw = ipaddress.ip_address(peer).packed
    wat = (
        GUEST.replace("ACTION", action.replace("PORT", str(port)))
        .replace("PEER_LEN", str(len(raw)))
        .replace("PEER", "".join(f"\\{b:02x}" for b in raw))
        .replace("FAMILY", str(family))
        .replace("KIND", str(kind))
    )
    out: list[bytes] = []
    with Instance(Module(wat.encode()), Host(stdout=out.append, network=network)) as instance:
        code = instance.run()
        listening = instance.listening
    data = b"".join(out)
    local = None
    if len(data) == 24:
        kind_code, local_port = struct.unpack_from("<II", data, 16)
        local = (str(ipaddress.ip_address(data[:4] if kind_code == 4 else data[:16])), local_port)
    return code, local, listening


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.settimeout(5)
        yield sock


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock


def _accepted_peer(listener: socket.socket) -> Local:
    conn, peer = listener.accept()
    conn.close()
    return peer[0], peer[1]


# --- item 3: implicit binds go through the policy -------------------------------------------


@pytest.mark.parametrize("family", [INET4, INET6])
def test_listen_without_bind_listens_on_the_host_address(family: int) -> None:
    network = Network(bind_address="127.0.0.1", ports=[PortMapping(0, 8080, "127.0.0.1")])
    code, local, listening = _run(network, LISTEN, family, STREAM)
    assert code == 0
    assert local is not None and local[0] == "127.0.0.1" and local[1] != 0
    assert listening == [local]


def test_listen_without_bind_and_without_host_is_the_kernels_choice() -> None:
    code, local, listening = _run(Network(), LISTEN, INET4, STREAM)
    assert code == 0
    assert local is not None and local[0] == "0.0.0.0" and local[1] != 0
    assert listening == [local]


def test_connect_from_an_unbound_socket_uses_the_host_address(listener: socket.socket) -> None:
    network = Network(bind_address="127.0.0.2", outbound=Rule.parse("127.0.0.1"))
    port = listener.getsockname()[1]
    code, local, _ = _run(network, CONNECT, INET4, STREAM, "127.0.0.1", port)
    assert code == 0
    assert local is not None and local[0] == "127.0.0.2"
    assert _accepted_peer(listener) == local


def test_send_to_from_an_unbound_socket_uses_the_host_address(receiver: socket.socket) -> None:
    network = Network(bind_address="127.0.0.2", outbound=Rule.parse("127.0.0.1"))
    port = receiver.getsockname()[1]
    code, local, listening = _run(network, SEND_TO, INET4, DGRAM, "127.0.0.1", port)
    assert code == 0
    data, sender = receiver.recvfrom(64)
    assert data == b"hello"
    assert local == sender and sender[0] == "127.0.0.2"
    assert listening == []  # a client's implicit bind is not a server


def test_connect_cannot_leave_from_a_host_address_of_the_other_family(listener: socket.socket) -> None:
    network = Network(bind_address="::1", outbound=Rule.parse("127.0.0.1"))
    code, _, _ = _run(network, CONNECT, INET4, STREAM, "127.0.0.1", listener.getsockname()[1])
    assert code == 100 + Errno.ADDRNOTAVAIL


# --- item 5: IPv4 reached through IPv6 forms is checked as IPv4 ----------------------------


@pytest.mark.parametrize(("rule", "allowed"), [("::/0", False), ("127.0.0.1", True)])
def test_connect_to_a_mapped_address_is_checked_as_ipv4(listener: socket.socket, rule: str, allowed: bool) -> None:
    network = Network(outbound=Rule.parse(rule))
    port = listener.getsockname()[1]
    code, _, _ = _run(network, CONNECT, INET6, STREAM, "::ffff:127.0.0.1", port)
    assert code == (0 if allowed else 100 + Errno.ACCES)
    listener.settimeout(0.5)
    with contextlib.suppress(TimeoutError):
        _accepted_peer(listener)
        assert allowed, "a denied connect reached the listener"


def test_send_to_a_mapped_address_is_checked_as_ipv4(receiver: socket.socket) -> None:
    network = Network(outbound=Rule.parse("::/0"))
    code, _, _ = _run(network, SEND_TO, INET6, DGRAM, "::ffff:127.0.0.1", receiver.getsockname()[1])
    assert code == 100 + Errno.ACCES
    receiver.settimeout(0.3)
    with pytest.raises(TimeoutError):
        receiver.recvfrom(64)


def test_host_override_given_as_a_mapped_address_binds_ipv4() -> None:
    code, local, _ = _run(Network(bind_address="::ffff:127.0.0.1"), LISTEN, INET6, STREAM)
    assert code == 0
    assert local is not None and local[0] == "127.0.0.1"


# --- item 4: lookups under default deny never reach the resolver --------------------------

LOOKUP = """
(module
  (import "wasi_snapshot_preview1" "sock_getaddrinfo"
    (func $gai (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "NAME\\00")
  (data (i32.const 200) "80\\00")
  (func (export "_start")
    ;; hints at 300 (INET4, STREAM); one record at 1000 -> sockaddr 1040 -> 26-byte data 1060
    (i32.store8 (i32.const 302) (i32.const 1))
    (i32.store8 (i32.const 303) (i32.const 2))
    (i32.store (i32.const 1012) (i32.const 1040))
    (i32.store (i32.const 1048) (i32.const 1060))
    (i32.store (i32.const 400) (i32.const 1000))
    (call $exit (call $gai (i32.const 0) (i32.const NAME_LEN) (i32.const 200) (i32.const 3)
                          (i32.const 300) (i32.const 400) (i32.const 1) (i32.const 404)))))
"""


@pytest.fixture
def resolver_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Every name this process hands to the system resolver from now on."""
    calls: list[tuple[object, ...]] = []
    real: Callable[..., Any] = socket.getaddrinfo

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    return calls


def _lookup(name: str, network: Network) -> int:
    wat = LOOKUP.replace("NAME_LEN", str(len(name) + 1)).replace("NAME", name)
    with Instance(Module(wat.encode()), Host(network=network)) as instance:
        return instance.run()


@pytest.mark.parametrize(
    "rules", [[], ["127.0.0.1"], ["10.0.0.0/8:53"], ["0.0.0.0/0:443"]], ids=["deny", "v4", "cidr-53", "any-443"]
)
def test_lookup_denied_by_policy_makes_no_resolver_call(rules: list[str], resolver_calls: list[object]) -> None:
    network = Network(outbound=[rule for spec in rules for rule in Rule.parse(spec)])
    resolver_calls.clear()
    assert _lookup("secret-data.attacker.example", network) == Errno.AIFAIL
    assert resolver_calls == []


@pytest.mark.parametrize("name", ["localhost", "LocalHost.", "app.localhost"])
def test_localhost_is_answered_without_the_resolver(name: str, resolver_calls: list[tuple[object, ...]]) -> None:
    resolver_calls.clear()
    assert _lookup(name, Network()) == 0
    assert [call[0] for call in resolver_calls] == ["127.0.0.1", "::1"]  # literals only (RFC 6761)


def test_numeric_lookup_is_answered_without_a_query(resolver_calls: list[tuple[object, ...]]) -> None:
    resolver_calls.clear()
    assert _lookup("127.0.0.1", Network()) == 0
    assert len(resolver_calls) == 1
    assert resolver_calls[0][0] == "127.0.0.1" and int(resolver_calls[0][5]) & socket.AI_NUMERICHOST  # type: ignore[call-overload]
