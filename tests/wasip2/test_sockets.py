"""wasi:sockets under the network policy, at the host-function level (no test guest opens
sockets yet): TCP connections and name lookups are refused unless ``outbound`` allows them,
and an allowed connection carries bytes both ways through wasi:io streams."""

from __future__ import annotations

import asyncio
from typing import Any

from wasmhost._native.component import Err, Ok
from wasmhost.net.policy import Network, Rule
from wasmhost.wasip2 import WasiConfig, io, sockets
from wasmhost.wasip2.context import Wasi


def v4(port: int) -> Any:
    return ("ipv4", (port, (127, 0, 0, 1)))


async def echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.read(100)).upper())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def connect(wasi: Wasi, port: int) -> Ok | Err:
    network = sockets.instance_network(wasi)
    created = sockets.create_tcp_socket(wasi, "ipv4")
    assert isinstance(created, Ok)
    started = sockets.start_connect(wasi, created.value, network, v4(port))
    if isinstance(started, Err):
        return started
    pollable = sockets.tcp_subscribe(wasi, created.value)
    await io.pollable_block(wasi, pollable)
    return sockets.finish_connect(wasi, created.value)


def test_connections_are_refused_unless_the_policy_allows_them() -> None:
    async def main() -> None:
        server = await echo_server()
        port = server.sockets[0].getsockname()[1]
        try:
            denied = Wasi(WasiConfig())
            assert await connect(denied, port) == Err("access-denied")
            other_port = Wasi(WasiConfig(network=Network(outbound=Rule.parse(f"127.0.0.1:{port + 1}"))))
            assert await connect(other_port, port) == Err("access-denied")

            allowed = Wasi(WasiConfig(network=Network(outbound=Rule.parse(f"127.0.0.1:{port}"))))
            streams = await connect(allowed, port)
            assert isinstance(streams, Ok)
            incoming, outgoing = streams.value
            assert await io.blocking_write_and_flush(allowed, outgoing, b"hello over tcp") == Ok(None)
            assert await io.blocking_read(allowed, incoming, 100) == Ok(b"HELLO OVER TCP")
            assert await io.blocking_read(allowed, incoming, 100) == Err(("closed", None))
            allowed.close()
            denied.close()
            other_port.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_a_refused_connection_is_reported_as_such() -> None:
    async def main() -> None:
        server = await echo_server()
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # nothing listens there any more
        wasi = Wasi(WasiConfig(network=Network(outbound=Rule.parse(f"127.0.0.1:{port}"))))
        assert await connect(wasi, port) == Err("connection-refused")
        wasi.close()

    asyncio.run(main())


def test_names_are_resolved_only_when_a_rule_names_them() -> None:
    async def main() -> None:
        denied = Wasi(WasiConfig())
        network = sockets.instance_network(denied)
        assert sockets.resolve_addresses(denied, network, "localhost") == Err("access-denied")
        literal = sockets.resolve_addresses(denied, network, "127.0.0.1")  # no lookup needed
        assert isinstance(literal, Ok)
        await io.pollable_block(denied, sockets.lookup_subscribe(denied, literal.value))
        assert sockets.resolve_next_address(denied, literal.value) == Ok(("ipv4", (127, 0, 0, 1)))
        assert sockets.resolve_next_address(denied, literal.value) == Ok(None)

        allowed = Wasi(WasiConfig(network=Network(outbound=Rule.parse("localhost:80"))))
        stream = sockets.resolve_addresses(allowed, sockets.instance_network(allowed), "localhost")
        assert isinstance(stream, Ok)
        await io.pollable_block(allowed, sockets.lookup_subscribe(allowed, stream.value))
        found = []
        while (address := sockets.resolve_next_address(allowed, stream.value)) != Ok(None):
            assert isinstance(address, Ok)
            found.append(address.value)
        assert ("ipv4", (127, 0, 0, 1)) in found
        denied.close()
        allowed.close()

    asyncio.run(main())
