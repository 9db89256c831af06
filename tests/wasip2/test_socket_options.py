"""wasi:sockets options at the host-function level, against what the same ``setsockopt`` gives a
native socket: keep-alive, its timers and count, the hop limit and the buffer sizes, set before
or after the host socket exists, passed on to accepted connections, 0 refused as the WIT says
and out-of-range values clamped where Linux would say EINVAL."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from wasmhost._native.component import Err, Ok
from wasmhost.wasip2 import WasiConfig, sockets
from wasmhost.wasip2.context import Wasi

S = 1_000_000_000  # nanoseconds
#: (option, guest value, the setsockopt a native socket gets for it, what the getter returns for
#: the native value): 1.5 s of idle time is 2 whole seconds.
SETTINGS = [
    ("keep-alive-enabled", True, (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), bool),
    ("keep-alive-idle-time", 3 * S // 2, (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2), lambda s: s * S),
    ("keep-alive-interval", 3 * S, (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 3), lambda s: s * S),
    ("keep-alive-count", 4, (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4), int),
    ("hop-limit", 17, (socket.IPPROTO_IP, socket.IP_TTL, 17), int),
    ("receive-buffer-size", 65536, (socket.SOL_SOCKET, socket.SO_RCVBUF, 65536), int),
    ("send-buffer-size", 40000, (socket.SOL_SOCKET, socket.SO_SNDBUF, 40000), int),
]


@pytest.fixture
def wasi() -> Iterator[Wasi]:
    wasi = Wasi(WasiConfig())
    yield wasi
    wasi.close()


def call(wasi: Wasi, resource: str, name: str, *args: Any) -> Any:
    interface = sockets.TCP if resource == "tcp-socket" else sockets.UDP
    return sockets.FUNCTIONS[interface, f"[method]{resource}.{name}"](wasi, *args)


def native(setting: tuple[int, int, int], kind: int = socket.SOCK_STREAM) -> int:
    """What a native socket reports after the same ``setsockopt``."""
    level, key, value = setting
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(level, key, value)
        return sock.getsockopt(level, key)


def tcp(wasi: Wasi) -> int:
    created = sockets.create_tcp_socket(wasi, "ipv4")
    assert isinstance(created, Ok)
    return int(created.value)


def bind(wasi: Wasi, rep: int, resource: str = "tcp-socket") -> None:
    network = sockets.instance_network(wasi)
    assert call(wasi, resource, "start-bind", rep, network, ("ipv4", (0, (127, 0, 0, 1)))) == Ok(None)
    assert call(wasi, resource, "finish-bind", rep) == Ok(None)


@pytest.mark.parametrize(("name", "value", "setting", "shown"), SETTINGS)
def test_an_option_set_before_bind_is_the_kernels_before_and_after(wasi: Wasi, name: str, value: int,
                                                                    setting: tuple[int, int, int],
                                                                    shown: Any) -> None:  # fmt: skip
    rep = tcp(wasi)
    expected = Ok(shown(native(setting)))
    assert call(wasi, "tcp-socket", f"set-{name}", rep, value) == Ok(None)
    assert call(wasi, "tcp-socket", name, rep) == expected
    bind(wasi, rep)
    assert call(wasi, "tcp-socket", name, rep) == expected
    host = wasi.table.get(rep, sockets.TcpSocket).sock
    assert host is not None and host.getsockopt(*setting[:2]) == native(setting)


@pytest.mark.parametrize(("name", "value", "setting", "shown"), SETTINGS)
def test_an_option_set_after_bind_goes_to_the_host_socket(wasi: Wasi, name: str, value: int,
                                                           setting: tuple[int, int, int],
                                                           shown: Any) -> None:  # fmt: skip
    rep = tcp(wasi)
    bind(wasi, rep)
    assert call(wasi, "tcp-socket", f"set-{name}", rep, value) == Ok(None)
    assert call(wasi, "tcp-socket", name, rep) == Ok(shown(native(setting)))


def test_an_untouched_option_reads_as_a_fresh_sockets(wasi: Wasi) -> None:
    rep = tcp(wasi)
    for name, _value, (level, key, _), shown in SETTINGS:
        with socket.socket() as fresh:
            assert call(wasi, "tcp-socket", name, rep) == Ok(shown(fresh.getsockopt(level, key))), name


@pytest.mark.parametrize("name", [name for name, *_ in SETTINGS if name != "keep-alive-enabled"])
def test_zero_is_an_invalid_argument(wasi: Wasi, name: str) -> None:
    rep = tcp(wasi)
    before = call(wasi, "tcp-socket", name, rep)
    assert call(wasi, "tcp-socket", f"set-{name}", rep, 0) == Err("invalid-argument")
    assert call(wasi, "tcp-socket", name, rep) == before


def test_values_linux_refuses_are_clamped(wasi: Wasi) -> None:
    """The WIT: any value but 0 is taken, maybe clamped. Linux caps the timers at 32767 s and the
    count at 127 (EINVAL beyond), and setsockopt takes a C int for the buffer sizes."""
    rep = tcp(wasi)
    beyond = [("keep-alive-idle-time", 10**15), ("keep-alive-interval", 2**64 - 1), ("keep-alive-count", 2**32 - 1),
              ("hop-limit", 255), ("receive-buffer-size", 2**64 - 1)]  # fmt: skip
    for name, value in beyond:
        assert call(wasi, "tcp-socket", f"set-{name}", rep, value) == Ok(None), name
    assert call(wasi, "tcp-socket", "keep-alive-idle-time", rep) == Ok(32767 * S)
    assert call(wasi, "tcp-socket", "keep-alive-interval", rep) == Ok(32767 * S)
    assert call(wasi, "tcp-socket", "keep-alive-count", rep) == Ok(127)
    assert call(wasi, "tcp-socket", "hop-limit", rep) == Ok(255)
    largest = native((socket.SOL_SOCKET, socket.SO_RCVBUF, 0x7FFF_FFFF))
    assert call(wasi, "tcp-socket", "receive-buffer-size", rep) == Ok(largest)


def test_an_accepted_connection_has_its_listeners_options() -> None:
    async def main() -> None:
        wasi = Wasi(WasiConfig())
        try:
            listener = tcp(wasi)
            for name, value in [("keep-alive-enabled", True), ("keep-alive-idle-time", 7 * S), ("hop-limit", 9)]:
                assert call(wasi, "tcp-socket", f"set-{name}", listener, value) == Ok(None)
            bind(wasi, listener)
            assert call(wasi, "tcp-socket", "start-listen", listener) == Ok(None)
            assert call(wasi, "tcp-socket", "finish-listen", listener) == Ok(None)
            port = sockets.local_address(wasi, listener).value[1][0]
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                await asyncio.sleep(0.05)
                accepted = await sockets.accept(wasi, listener)
                assert isinstance(accepted, Ok)
                conn = accepted.value[0]
                assert call(wasi, "tcp-socket", "keep-alive-enabled", conn) == Ok(True)
                assert call(wasi, "tcp-socket", "keep-alive-idle-time", conn) == Ok(7 * S)
                assert call(wasi, "tcp-socket", "hop-limit", conn) == Ok(9)
        finally:
            wasi.close()
            await asyncio.sleep(0)  # the transport's close runs on the loop

    asyncio.run(main())


def test_udp_has_the_hop_limit_and_buffer_sizes(wasi: Wasi) -> None:
    created = sockets.create_udp_socket(wasi, "ipv4")
    assert isinstance(created, Ok)
    rep = created.value
    assert call(wasi, "udp-socket", "set-unicast-hop-limit", rep, 3) == Ok(None)
    assert call(wasi, "udp-socket", "set-receive-buffer-size", rep, 50000) == Ok(None)
    bind(wasi, rep, "udp-socket")
    assert call(wasi, "udp-socket", "unicast-hop-limit", rep) == Ok(3)
    expected = native((socket.SOL_SOCKET, socket.SO_RCVBUF, 50000), socket.SOCK_DGRAM)
    assert call(wasi, "udp-socket", "receive-buffer-size", rep) == Ok(expected)
    assert call(wasi, "udp-socket", "set-send-buffer-size", rep, 0) == Err("invalid-argument")
