"""Network policy values: port maps, outbound rules, lookups, address normalisation, validation."""

from __future__ import annotations

import ipaddress
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmhost import ConfigError
from wasmhost.net.policy import Network, PortMapping, Rule, normalise, normalise_network

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("spec", "mapping"),
    [
        ("18080:8080", PortMapping(18080, 8080)),
        ("0:8080", PortMapping(0, 8080)),
        ("127.0.0.1:18080:8080", PortMapping(18080, 8080, "127.0.0.1")),
        ("[::1]:18080:8080", PortMapping(18080, 8080, "::1")),
        ("[::ffff:127.0.0.1]:18080:8080", PortMapping(18080, 8080, "127.0.0.1")),
    ],
)
def test_port_mapping_forms(spec: str, mapping: PortMapping) -> None:
    assert PortMapping.parse(spec) == mapping


@pytest.mark.parametrize("spec", ["8080", "a:8080", "1:70000", "-1:80", "localhost:1:2", "[nope]:1:2"])
def test_bad_port_mappings_are_one_line(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        PortMapping.parse(spec)
    assert str(info.value).startswith(f"-p {spec}: ") and "\n" not in str(info.value)


@given(host=st.integers(0, 65535), guest=st.integers(0, 65535))
def test_port_mapping_round_trip(host: int, guest: int) -> None:
    assert PortMapping.parse(f"{host}:{guest}") == PortMapping(host, guest)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("::ffff:0.0.0.0", "0.0.0.0"),
        ("64:ff9b::7f00:1", "127.0.0.1"),
        ("64:ff9b::c000:201", "192.0.2.1"),
        ("64:ff9b:1::7f00:1", "64:ff9b:1::7f00:1"),  # local-use NAT64 prefix: layout is the operator's
        ("::7f00:1", "::7f00:1"),  # IPv4-compatible (deprecated, not routed to IPv4 by Linux)
        ("::ffff:1:7f00:1", "::ffff:1:7f00:1"),  # not inside ::ffff:0:0/96
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_normalise(address: str, expected: str) -> None:
    assert normalise(ip(address)) == ip(expected)


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:127.0.0.1/128", "127.0.0.1/32"),
        ("64:ff9b::/96", "0.0.0.0/0"),
        ("::/0", "::/0"),  # wider than the embedding prefix: stays IPv6
        ("::ffff:0:0/95", "::fffe:0:0/95"),
        ("10.0.0.0/8", "10.0.0.0/8"),
    ],
)
def test_normalise_network(network: str, expected: str) -> None:
    assert normalise_network(ipaddress.ip_network(network, strict=False)) == ipaddress.ip_network(expected)


@pytest.mark.parametrize(
    ("rules", "address", "port", "allowed"),
    [
        (["::/0"], "::ffff:127.0.0.1", 80, False),  # issue 12.5: mapped IPv4 is IPv4
        (["::/0"], "64:ff9b::7f00:1", 80, False),
        (["::/0"], "::1", 80, True),
        (["127.0.0.1"], "::ffff:127.0.0.1", 80, True),
        (["127.0.0.1"], "64:ff9b::7f00:1", 80, True),
        (["::ffff:127.0.0.1"], "127.0.0.1", 80, True),
        (["[::ffff:127.0.0.1]:80"], "127.0.0.1", 81, False),
        (["10.0.0.0/8"], "10.2.3.4", 1, True),
        (["127.0.0.1:8080"], "127.0.0.1", 8081, False),
        (["[::1]:443"], "::1", 443, True),
        ([], "127.0.0.1", 80, False),  # denied by default
    ],
)
def test_outbound_rules(rules: list[str], address: str, port: int, allowed: bool) -> None:
    network = Network(outbound=[rule for spec in rules for rule in Rule.parse(spec)])
    assert network.allows_outbound(ip(address), port) is allowed


def test_host_name_rules_remember_the_name() -> None:
    rules = Rule.parse("LocalHost:80")
    assert rules and all(rule.host == "localhost" and rule.port == 80 for rule in rules)
    assert any(rule.allows(ip("127.0.0.1"), 80) for rule in rules)
    assert Rule.parse("127.0.0.1")[0].host is None


@pytest.mark.parametrize(
    ("rules", "name", "allowed"),
    [
        ([], "attacker.example", False),
        (["10.0.0.0/8"], "attacker.example", False),  # an address rule names no host
        (["localhost:80"], "localhost", True),
        (["localhost:80"], "LOCALHOST.", True),
        (["localhost:80"], "data.localhost", False),
        (["0.0.0.0/0"], "attacker.example", True),  # may already send anything anywhere
        (["::/0"], "attacker.example", True),
        (["0.0.0.0/0:443"], "attacker.example", False),
    ],
)
def test_lookups(rules: list[str], name: str, allowed: bool) -> None:
    network = Network(outbound=[rule for spec in rules for rule in Rule.parse(spec)])
    assert network.allows_lookup(name) is allowed


def test_bad_outbound_rule_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^--allow-outbound no\.such\.host\.invalid: "):
        Rule.parse("no.such.host.invalid")


def test_bind_target_applies_override_and_map() -> None:
    network = Network(bind_address="127.0.0.1", ports=[PortMapping(0, 8080), PortMapping(9000, 9, "::1")])
    assert network.bind_target(ip("0.0.0.0"), 8080) == ("127.0.0.1", 0)
    assert network.bind_target(ip("0.0.0.0"), 9) == ("::1", 9000)
    assert network.bind_target(ip("0.0.0.0"), 7) == ("127.0.0.1", 7)
    assert Network().bind_target(ip("0.0.0.0"), 8080) == ("0.0.0.0", 8080)


@pytest.mark.parametrize(
    ("given_address", "kept"),
    [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("0.0.0.0", "0.0.0.0"), ("::ffff:127.0.0.1", "127.0.0.1")],
)
def test_bind_address_is_an_ip_literal(given_address: str, kept: str) -> None:
    assert Network(bind_address=given_address).bind_address == kept


@pytest.mark.parametrize("bad", ["localhost", "not-an-addr", "", "127.0.0.1:80", "10.0.0.0/8"])
def test_bind_address_names_are_refused_in_one_line(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        Network(bind_address=bad)
    assert str(info.value) == f"bind address {bad!r}: not an IP address (give one, e.g. 127.0.0.1 or ::1)"


@pytest.mark.parametrize("bad", [-0.1, math.inf, math.nan, -math.inf])
def test_idle_backoff_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"^idle backoff: must be a non-negative number of seconds, got "):
        Network(idle_backoff=bad)
    assert Network(idle_backoff=0).idle_backoff == 0
