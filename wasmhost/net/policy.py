"""Network policy: where a guest may listen, whom it may call and which names it may look up.

Pure values (frozen attrs): a port map like Docker's ``-p HOST:GUEST``, a bind-address
override, and an outbound allow list of addresses, CIDRs, host names and ports. Outbound
connections and name lookups are denied unless a rule allows them. Every address is
normalised (``normalise``) before it is compared, so an IPv4 host cannot be reached under
an IPv6 rule by writing it as ``::ffff:a.b.c.d`` or ``64:ff9b::a.b.c.d``.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Iterable

import attrs

from ..errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: IPv6 prefixes that carry an IPv4 address in their last 32 bits and reach that IPv4 host:
#: IPv4-mapped addresses (the kernel's dual-stack sockets) and NAT64's well-known prefix.
EMBEDDED_V4 = (ipaddress.IPv6Network("::ffff:0:0/96"), ipaddress.IPv6Network("64:ff9b::/96"))


def normalise(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (``::ffff:a.b.c.d``, ``64:ff9b::a.b.c.d``),
    else the address itself: what every policy check compares."""
    if address.version == 6 and any(address in prefix for prefix in EMBEDDED_V4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def normalise_network(network: IPNetwork) -> IPNetwork:
    """``normalise`` for a rule's network: an IPv6 network inside an embedding prefix becomes
    the IPv4 network it covers (``::ffff:10.0.0.0/104`` -> ``10.0.0.0/8``)."""
    if network.version == 6 and network.prefixlen >= 96 and normalise(network.network_address).version == 4:
        return ipaddress.IPv4Network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
    return network


def _address(text: str, what: str) -> str:
    """An IP literal, normalised; a host name is refused (it could name several addresses)."""
    try:
        return str(normalise(ipaddress.ip_address(text)))
    except ValueError:
        raise ConfigError(f"{what} {text!r}: not an IP address (give one, e.g. 127.0.0.1 or ::1)") from None


def _bind_address(value: str | None) -> str | None:
    return None if value is None else _address(value, "bind address")


def _mapping_address(value: str | None) -> str | None:
    return None if value is None else _address(value, "published address")


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(f"{what}: port {text!r} is not a number from 0 to 65535")
    return int(text)


def split_host_port(spec: str) -> tuple[str, str | None]:
    """``[v6]:port``, ``v4:port``, ``host:port``, or an address alone."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if spec.count(":") == 1:
        host, _, port = spec.partition(":")
        return host, port
    return spec, None


def host_name(name: str) -> str:
    """The form host names are compared in: lower case, without the root's trailing dot."""
    return name.rstrip(".").lower()


@attrs.frozen
class PortMapping:
    """Guest port ``guest`` is served on host port ``host`` (0: the OS picks one)."""

    host: int
    guest: int
    address: str | None = attrs.field(default=None, converter=_mapping_address)

    @classmethod
    def parse(cls, spec: str) -> PortMapping:
        """Docker's ``-p`` forms: ``HOSTPORT:GUESTPORT`` or ``IP:HOSTPORT:GUESTPORT``."""
        what = f"-p {spec}"
        address, sep, ports = spec.rpartition(":")
        if not sep:
            raise ConfigError(f"{what}: expected HOSTPORT:GUESTPORT")
        if ":" in address:
            ip, _, host_port = address.rpartition(":")
            host, guest = _port(host_port, what), _port(ports, what)
            try:
                return cls(host, guest, ip.strip("[]") or None)
            except ConfigError as exc:
                raise ConfigError(f"{what}: {exc}") from None
        return cls(_port(address, what), _port(ports, what))


@attrs.frozen
class Rule:
    """One outbound allowance: a network (an address is a /32 or /128) and optional port.

    ``host`` is the name the rule was made from, if any: the guest may look that name up.
    """

    network: IPNetwork = attrs.field(converter=normalise_network)
    port: int | None = None
    host: str | None = None

    @classmethod
    def parse(cls, spec: str) -> tuple[Rule, ...]:
        """``ADDR``, ``ADDR:PORT``, ``CIDR``, ``CIDR:PORT``, ``[V6]:PORT`` or ``HOSTNAME[:PORT]``."""
        what = f"--allow-outbound {spec}"
        host, port_text = split_host_port(spec)
        port = _port(port_text, what) if port_text is not None else None
        try:
            return (cls(ipaddress.ip_network(host, strict=False), port),)
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise ConfigError(f"{what}: {host!r} is not an address, a CIDR or a resolvable host name") from None
        name = host_name(host)
        return tuple(cls(ipaddress.ip_network(str(info[4][0]).split("%")[0]), port, name) for info in infos)

    def allows(self, address: IPAddress, port: int) -> bool:
        return normalise(address) in self.network and self.port in (None, port)

    @property
    def allows_everything(self) -> bool:
        """Every address of a family on every port: the guest can already send anything anywhere."""
        return self.network.prefixlen == 0 and self.port is None


def _rules(value: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(value)


def _mappings(value: Iterable[PortMapping]) -> tuple[PortMapping, ...]:
    return tuple(value)


def _backoff(_inst: object, _attr: object, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"idle backoff: must be a non-negative number of seconds, got {value}")


def _limit(_inst: object, _attr: object, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"connection limit: must be positive, got {value}")


@attrs.frozen
class Network:
    """A guest's network capabilities.

    ``bind_address`` (an IP literal) replaces the address every socket the guest binds,
    explicitly or implicitly (listen, connect or send_to on an unbound socket), so a guest
    that hard-codes 0.0.0.0 is served on 127.0.0.1; ``ports`` remaps guest ports;
    ``outbound`` lists what the guest may connect or send to, and which names it may look up.
    ``nodelay`` sets TCP_NODELAY on accepted and connected sockets (guests cannot, and Nagle
    costs ~40 ms per two-write response). ``idle_backoff`` caps how long readiness the guest
    already saw, and did no I/O about, is held back before it is reported again (0 reports
    it at once, strictly level-triggered); see docs/guide/sockets.md.
    """

    bind_address: str | None = attrs.field(default=None, converter=_bind_address)
    ports: tuple[PortMapping, ...] = attrs.field(default=(), converter=_mappings)
    outbound: tuple[Rule, ...] = attrs.field(default=(), converter=_rules)
    nodelay: bool = True
    idle_backoff: float = attrs.field(default=0.25, validator=_backoff)
    #: SO_REUSEPORT on every socket the guest binds, so worker processes share its ports.
    reuse_port: bool = False
    #: Most accepted connections the guest holds open at once (None: no limit); at the limit
    #: its listeners are not reported ready, so new connections wait in the kernel's backlog.
    limit_concurrency: int | None = attrs.field(default=None, validator=_limit)

    def bind_target(self, address: IPAddress, port: int) -> tuple[str, int]:
        """Where a guest's ``bind(address, port)`` really binds on the host."""
        host = self.bind_address or str(address)
        for mapping in self.ports:
            if mapping.guest == port:
                return mapping.address or host, mapping.host
        return host, port

    def allows_outbound(self, address: IPAddress, port: int) -> bool:
        return any(rule.allows(address, port) for rule in self.outbound)

    def allows_lookup(self, name: str) -> bool:
        """Whether the guest may send ``name`` to the resolver: a rule was made from that
        name, or a rule already lets the guest send anything anywhere."""
        wanted = host_name(name)
        return any(rule.host == wanted or rule.allows_everything for rule in self.outbound)
