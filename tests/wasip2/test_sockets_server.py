"""wasi:sockets servers and UDP, from real componentize-py guests that use Python's ``socket``
module (wasi-libc's wasi:sockets), served as wasi:http components: ``tcp-echo`` listens and
echoes one connection, ``udp-echo`` answers one datagram or sends one. Binds go where the
policy's ``--host`` and ``-p`` put them; datagrams go only where ``--allow-outbound`` allows,
or back to a peer that sent one. The socket state machine is checked at the host functions."""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import open_fds
from tests.http.conftest import ServeHandler
from tests.wasi.test_sock_policy import receiver as receiver  # a UDP socket of the test's on 127.0.0.1
from tests.wasip2.test_http_components import request, serve, settle
from wasmhost import Module
from wasmhost._native.component import Err, Ok
from wasmhost.net.policy import Network, PortMapping, Rule
from wasmhost.wasip2 import WasiConfig, io, sockets
from wasmhost.wasip2.context import Wasi

ECHOED = re.compile(rb"echoed (\d+) bytes")


def started(port: int, headers: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A request whose response headers came (the guest answered and now waits on its socket)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/", headers=headers)
    return conn, conn.getresponse()


def local(answer: http.client.HTTPResponse) -> tuple[str, int]:
    host, _, port = (answer.getheader("x-local") or "").rpartition(":")
    return host, int(port)


def echo_over_tcp(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    with socket.create_connection((host, port), timeout=30) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return received


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def nothing_arrives(peer: socket.socket, seconds: float = 0.5) -> bool:
    return not select.select([peer], [], [], seconds)[0]


@pytest.fixture
def tcp_echo(http_module: Callable[[str], Module]) -> Module:
    return http_module("tcp-echo")


@pytest.fixture
def udp_echo(http_module: Callable[[str], Module]) -> Module:
    return http_module("udp-echo")


# --- TCP ----------------------------------------------------------------------------------------


def test_a_guest_listens_accepts_and_echoes_a_connection(serve_handler: ServeHandler, tcp_echo: Module) -> None:
    running, handler = serve(serve_handler, tcp_echo, pool=1)
    fds_before = open_fds()
    conn, answer = started(running.port, {"x-bind": "127.0.0.1:0"})
    host, port = local(answer)
    assert (answer.status, host) == (200, "127.0.0.1")
    payload = bytes(range(256)) * 1000
    assert echo_over_tcp(port, payload) == payload
    assert answer.read() == f"echoed {len(payload)} bytes from 127.0.0.1\n".encode()
    conn.close()
    assert settle(running, handler, 1) == 1
    assert refused("127.0.0.1", port)  # the guest closed its listener: nothing is left listening
    deadline = time.monotonic() + 5
    while open_fds() - fds_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not open_fds() - fds_before  # nor any descriptor of the listener or the connection


def test_host_confines_a_wildcard_bind_to_its_address(serve_handler: ServeHandler, tcp_echo: Module) -> None:
    """Under ``--host 127.0.0.1`` a guest binding 0.0.0.0 listens on 127.0.0.1 only (127.0.0.2,
    also loopback, is refused), and is told so."""
    config = WasiConfig(network=Network(bind_address="127.0.0.1"))
    running, _handler = serve(serve_handler, tcp_echo, config=config, pool=1)
    conn, answer = started(running.port, {"x-bind": "0.0.0.0:0"})
    host, port = local(answer)
    assert (answer.status, host) == (200, "127.0.0.1")
    assert refused("127.0.0.2", port)
    assert echo_over_tcp(port, b"confined") == b"confined"
    assert ECHOED.match(answer.read())
    conn.close()


def test_a_published_port_is_where_the_guest_listens(serve_handler: ServeHandler, tcp_echo: Module,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """``-p 0:8080``: the guest binds 8080 and sees 8080; the host listens on a port the OS picked,
    which the log line names."""
    caplog.set_level(logging.INFO, "wasmhost")
    config = WasiConfig(network=Network(bind_address="127.0.0.1", ports=[PortMapping(0, 8080)]))
    running, _handler = serve(serve_handler, tcp_echo, config=config, pool=1)
    conn, answer = started(running.port, {"x-bind": "0.0.0.0:8080"})
    assert (answer.status, local(answer)) == (200, ("127.0.0.1", 8080))
    lines = [r.getMessage() for r in caplog.records if "(guest port 8080)" in r.getMessage()]
    found = re.search(r"listening on 127\.0\.0\.1:(\d+) \(guest port 8080\)", lines[-1] if lines else "")
    assert found, lines
    assert echo_over_tcp(int(found.group(1)), b"published") == b"published"
    assert ECHOED.match(answer.read())
    conn.close()


def test_binding_an_address_the_host_does_not_have_fails(serve_handler: ServeHandler, tcp_echo: Module) -> None:
    running, _handler = serve(serve_handler, tcp_echo, pool=1)
    assert request(running.port, headers={"x-bind": "192.0.2.1:0"})[::2] == (502, b"EADDRNOTAVAIL")  # TEST-NET-1


def test_a_socket_cannot_bind_where_host_is_of_the_other_family(serve_handler: ServeHandler,
                                                               tcp_echo: Module) -> None:  # fmt: skip
    """``--host ::1`` cannot take an IPv4 socket (preview1 would re-create it as IPv6)."""
    running, _handler = serve(serve_handler, tcp_echo, config=WasiConfig(network=Network(bind_address="::1")), pool=1)
    assert request(running.port, headers={"x-bind": "0.0.0.0:0"})[::2] == (502, b"EADDRNOTAVAIL")


def test_binding_a_port_in_use_fails_with_address_in_use(serve_handler: ServeHandler, tcp_echo: Module) -> None:
    running, _handler = serve(serve_handler, tcp_echo, pool=1)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert request(running.port, headers={"x-bind": f"127.0.0.1:{port}"})[::2] == (502, b"EADDRINUSE")


# --- UDP ----------------------------------------------------------------------------------------


def test_a_guest_answers_the_peer_a_datagram_came_from(serve_handler: ServeHandler, udp_echo: Module,
                                                       receiver: socket.socket) -> None:  # fmt: skip
    """No outbound rule is needed to answer a sender."""
    running, handler = serve(serve_handler, udp_echo, pool=1)
    conn, answer = started(running.port, {"x-bind": "127.0.0.1:0"})
    host, port = local(answer)
    assert (answer.status, host) == (200, "127.0.0.1")
    receiver.sendto(b"ping", ("127.0.0.1", port))
    assert receiver.recvfrom(100) == (b"ping", ("127.0.0.1", port))
    assert answer.read() == f"echoed 4 bytes to 127.0.0.1:{receiver.getsockname()[1]}\n".encode()
    conn.close()
    assert settle(running, handler, 1) == 1


def test_a_datagram_goes_where_a_rule_allows(serve_handler: ServeHandler, udp_echo: Module,
                                             receiver: socket.socket) -> None:  # fmt: skip
    """The guest sends from an unbound socket: wasi-libc binds it to the unspecified address,
    which ``--host`` turns into 127.0.0.1."""
    target = receiver.getsockname()
    network = Network(bind_address="127.0.0.1", outbound=Rule.parse(f"127.0.0.1:{target[1]}"))
    running, _handler = serve(serve_handler, udp_echo, config=WasiConfig(network=network), pool=1)
    status, _headers, body = request(running.port, headers={"x-send-to": f"127.0.0.1:{target[1]}", "x-data": "hi"})
    assert status == 200, body
    data, sender = receiver.recvfrom(100)
    assert data == b"hi"
    assert body == f"sent 2 bytes from 127.0.0.1:{sender[1]}\n".encode()


@pytest.mark.parametrize("rules", [(), ("127.0.0.1:1",), ("10.0.0.0/8",)], ids=["no rule", "other port", "other net"])
def test_a_datagram_to_a_denied_address_is_access_denied(
    serve_handler: ServeHandler, udp_echo: Module, receiver: socket.socket, rules: tuple[str, ...]
) -> None:
    network = Network(outbound=[rule for spec in rules for rule in Rule.parse(spec)])
    running, _handler = serve(serve_handler, udp_echo, config=WasiConfig(network=network), pool=1)
    target = f"127.0.0.1:{receiver.getsockname()[1]}"
    for bind in ({}, {"x-bind": "127.0.0.1:0"}):
        status, _headers, body = request(running.port, headers={"x-send-to": target, "x-data": "leak", **bind})
        assert (status, body) == (502, b"EACCES")
    assert nothing_arrives(receiver)


# --- the state machine, at the host functions ----------------------------------------------------


def v4(port: int, address: tuple[int, int, int, int] = (127, 0, 0, 1)) -> Any:
    return ("ipv4", (port, address))


def test_tcp_follows_the_wit_state_machine() -> None:
    wasi = Wasi(WasiConfig())
    network = sockets.instance_network(wasi)
    rep = sockets.create_tcp_socket(wasi, "ipv4").value
    try:
        assert sockets.start_listen(wasi, rep) == Err("invalid-state")  # unlike POSIX, bind first
        assert sockets.local_address(wasi, rep) == Err("invalid-state")
        assert sockets.start_bind(wasi, rep, network, ("ipv6", (0, 0, (0,) * 8, 0))) == Err("invalid-argument")
        assert sockets.finish_bind(wasi, rep) == Err("not-in-progress")
        assert sockets.start_bind(wasi, rep, network, v4(0)) == Ok(None)
        assert sockets.start_bind(wasi, rep, network, v4(0)) == Err("invalid-state")
        assert sockets.finish_bind(wasi, rep) == Ok(None)
        assert sockets.set_listen_backlog_size(wasi, rep, 0) == Err("invalid-argument")
        assert sockets.set_listen_backlog_size(wasi, rep, 16) == Ok(None)
        assert (sockets.start_listen(wasi, rep), sockets.finish_listen(wasi, rep)) == (Ok(None), Ok(None))
        assert sockets.is_listening(wasi, rep)
        assert sockets.remote_address(wasi, rep) == Err("invalid-state")
        assert sockets.start_connect(wasi, rep, network, v4(80)) == Err("invalid-state")
        pending = sockets.tcp_subscribe(wasi, rep)
        assert not io.pollable_ready(wasi, pending)  # ready only when a connection waits
        assert asyncio.run(sockets.accept(wasi, rep)) == Err("would-block")
        port = sockets.local_address(wasi, rep).value[1][0]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            assert io.pollable_ready(wasi, pending)
    finally:
        wasi.close()


def test_a_connection_from_an_unbound_socket_leaves_from_host() -> None:
    """As in preview1, ``--host`` is the local address of outgoing connections too."""

    async def main() -> None:
        peers: list[str] = []

        async def note(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer.get_extra_info("peername")[0])
            writer.close()

        server = await asyncio.start_server(note, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        wasi = Wasi(WasiConfig(network=Network(bind_address="127.0.0.2", outbound=Rule.parse(f"127.0.0.1:{port}"))))
        try:
            rep = sockets.create_tcp_socket(wasi, "ipv4").value
            assert sockets.start_connect(wasi, rep, sockets.instance_network(wasi), v4(port)) == Ok(None)
            await io.pollable_block(wasi, sockets.tcp_subscribe(wasi, rep))
            assert isinstance(sockets.finish_connect(wasi, rep), Ok)
            assert sockets.local_address(wasi, rep).value[1][1] == (127, 0, 0, 2)
            assert sockets.remote_address(wasi, rep) == Ok(v4(port))
            await asyncio.sleep(0.1)
            assert peers == ["127.0.0.2"]
        finally:
            wasi.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_a_dropped_socket_closes_its_connection_once_nothing_holds_it() -> None:
    """A connect the guest never finished is closed with the socket; a socket whose streams
    live closes when they go."""

    async def main() -> None:
        ended: list[bytes] = []

        async def wait_for_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ended.append(await reader.read())
            writer.close()

        server = await asyncio.start_server(wait_for_end, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        wasi = Wasi(WasiConfig(network=Network(outbound=Rule.parse(f"127.0.0.1:{port}"))))
        network = sockets.instance_network(wasi)
        try:
            unfinished, held = (sockets.create_tcp_socket(wasi, "ipv4").value for _ in range(2))
            for rep in (unfinished, held):
                assert sockets.start_connect(wasi, rep, network, v4(port)) == Ok(None)
                pollable = sockets.tcp_subscribe(wasi, rep)
                await io.pollable_block(wasi, pollable)
                wasi.table.drop(pollable)
            streams = sockets.finish_connect(wasi, held).value
            wasi.table.drop(unfinished)
            wasi.table.drop(held)
            await asyncio.sleep(0.2)
            assert ended == [b""]  # the unfinished one; the other lives on in its streams
            for stream in streams:
                wasi.table.drop(stream)
            await asyncio.sleep(0.2)
            assert ended == [b"", b""]
        finally:
            wasi.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_udp_sends_only_what_check_send_permitted() -> None:
    wasi = Wasi(WasiConfig())
    network = sockets.instance_network(wasi)
    rep = sockets.create_udp_socket(wasi, "ipv4").value
    try:
        assert sockets.udp_stream(wasi, rep, None) == Err("invalid-state")  # not bound
        assert (sockets.start_bind(wasi, rep, network, v4(0)), sockets.finish_bind(wasi, rep)) == (Ok(None), Ok(None))
        streams = sockets.udp_stream(wasi, rep, None)
        assert isinstance(streams, Ok)
        incoming, outgoing = streams.value
        assert sockets.receive(wasi, incoming, 10) == Ok([])  # nothing yet, never would-block
        assert sockets.send(wasi, outgoing, []) == Ok(0)
        with pytest.raises(ValueError, match="check-send permitted 0"):
            sockets.send(wasi, outgoing, [(b"x", v4(9))])
        assert isinstance(sockets.check_send(wasi, outgoing), Ok)
        assert sockets.send(wasi, outgoing, [(b"x", None)]) == Err("invalid-argument")  # no peer given
        assert sockets.remote_address(wasi, rep) == Err("invalid-state")
    finally:
        wasi.close()
