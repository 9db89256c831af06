"""Network policy: where a guest may listen and whom it may call.

Pure values (frozen attrs): a port map like Docker's ``-p HOST:GUEST``, a bind-address
override, and an outbound allow list of addresses, CIDRs and ports. Outbound connections
are denied unless a rule allows them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import attrs

from ..errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(f"{what}: port {text!r} is not a number from 0 to 65535")
    return int(text)


def _split_host_port(spec: str) -> tuple[str, str | None]:
    """``[v6]:port``, ``v4:port``, ``host:port``, or an address alone."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if spec.count(":") == 1:
        host, _, port = spec.partition(":")
        return host, port
    return spec, None


@attrs.frozen
class PortMapping:
    """Guest port ``guest`` is served on host port ``host`` (0: the OS picks one)."""

    host: int
    guest: int
    address: str | None = None

    @classmethod
    def parse(cls, spec: str) -> PortMapping:
        """Docker's ``-p`` forms: ``HOSTPORT:GUESTPORT`` or ``IP:HOSTPORT:GUESTPORT``."""
        what = f"-p {spec}"
        address, sep, ports = spec.rpartition(":")
        if not sep:
            raise ConfigError(f"{what}: expected HOSTPORT:GUESTPORT")
        if ":" in address:
            ip, _, host_port = address.rpartition(":")
            return cls(_port(host_port, what), _port(ports, what), ip.strip("[]") or None)
        return cls(_port(address, what), _port(ports, what))


@attrs.frozen
class Rule:
    """One outbound allowance: a network (an address is a /32 or /128) and optional port."""

    network: IPNetwork
    port: int | None = None

    @classmethod
    def parse(cls, spec: str) -> tuple[Rule, ...]:
        """``ADDR``, ``ADDR:PORT``, ``CIDR``, ``CIDR:PORT``, ``[V6]:PORT`` or ``HOSTNAME[:PORT]``."""
        what = f"--allow-outbound {spec}"
        host, port_text = _split_host_port(spec)
        port = _port(port_text, what) if port_text is not None else None
        try:
            return (cls(ipaddress.ip_network(host, strict=False), port),)
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise ConfigError(f"{what}: {host!r} is not an address, a CIDR or a resolvable host name") from None
        return tuple(cls(ipaddress.ip_network(info[4][0]), port) for info in infos)

    def allows(self, address: IPAddress, port: int) -> bool:
        return address in self.network and self.port in (None, port)


def _rules(value: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(value)


def _mappings(value: Iterable[PortMapping]) -> tuple[PortMapping, ...]:
    return tuple(value)


@attrs.frozen
class Network:
    """A guest's network capabilities.

    ``bind_address`` replaces the address every listening socket binds (e.g. a guest that
    hard-codes 0.0.0.0 is served on 127.0.0.1); ``ports`` remaps guest ports; ``outbound``
    lists what the guest may connect or send to. ``nodelay`` sets TCP_NODELAY on accepted
    and connected sockets (guests cannot, and Nagle costs ~40 ms per two-write response).
    ``idle_backoff`` caps how long readiness the guest already saw, and did no I/O
    about, is held back before it is reported again (0 reports it at once, strictly
    level-triggered); see docs/guide/sockets.md.
    """

    bind_address: str | None = None
    ports: tuple[PortMapping, ...] = attrs.field(default=(), converter=_mappings)
    outbound: tuple[Rule, ...] = attrs.field(default=(), converter=_rules)
    nodelay: bool = True
    idle_backoff: float = 0.25

    def bind_target(self, address: IPAddress, port: int) -> tuple[str, int]:
        """Where a guest's ``bind(address, port)`` really binds on the host."""
        host = self.bind_address or str(address)
        for mapping in self.ports:
            if mapping.guest == port:
                return mapping.address or host, mapping.host
        return host, port

    def allows_outbound(self, address: IPAddress, port: int) -> bool:
        return any(rule.allows(address, port) for rule in self.outbound)
