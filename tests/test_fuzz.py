"""The short fuzz run: every target over its committed seeds and regressions (``fuzz/``), then a
bounded run of inputs mutated from them with a fixed seed. The long, coverage-guided run is
``benchmarks/fuzz.py``. A failing input is printed in hex: commit it to ``fuzz/regressions/TARGET/``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

import fuzz
from fuzz import host_calls, http_protocol, serve_bytes, sockio, wasip2_calls
from tests.conftest import ServeFactory, open_fds

#: Mutated inputs per target after the committed ones (the serving target gets none: it runs a
#: real server over sockets, so the suite keeps to its fixed hostile inputs).
MUTATIONS = {"host_calls": 400, "http_protocol": 1500, "serve_bytes": 0, "sockio": 300, "wasip2_calls": 600}


def _mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """One random edit: change, insert or delete bytes, or splice in part of another input."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(out))
        choice = rng.randrange(4)
        if choice == 0 and out:
            out[min(pos, len(out) - 1)] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif choice == 1:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 2:
            del out[pos : pos + rng.randint(1, 16)]
        else:
            start = rng.randint(0, len(other))
            out[pos:pos] = other[start : start + rng.randint(1, 64)]
    return bytes(out)


def _run(target: str, one_input: Callable[[bytes], object]) -> int:
    """Run the committed inputs, then the mutations; returns how many inputs ran."""
    committed = [path.read_bytes() for path in fuzz.inputs(target)]
    assert committed, f"no inputs in fuzz/corpus/{target}"
    rng = random.Random(f"wasmhost-{target}")
    mutated = [_mutate(rng, rng.choice(committed), rng.choice(committed)) for _ in range(MUTATIONS[target])]
    for data in committed + mutated:
        try:
            one_input(data)
        except BaseException:
            print(f"{target}: this input failed, commit it to fuzz/regressions/{target}/: {data.hex()}")
            raise
    count = len(committed) + len(mutated)
    print(f"fuzz {target}: {count} inputs ({len(committed)} committed, {len(mutated)} mutated), no finding")
    return count


@pytest.mark.parametrize(("target", "one_input"), [("host_calls", host_calls.one_input),
                                                   ("http_protocol", http_protocol.one_input),
                                                   ("sockio", sockio.one_input),
                                                   ("wasip2_calls", wasip2_calls.one_input)])  # fmt: skip
def test_in_process_target_survives_its_inputs(
    target: str, one_input: Callable[[bytes], object], record_property: Callable[[str, object], None]
) -> None:
    one_input(b"\0")  # the target's own lasting state (a loop, a scratch directory) is made now
    before = open_fds()
    record_property("inputs", _run(target, one_input))
    assert not open_fds() - before  # descriptors of earlier tests may close meanwhile


def test_served_guest_survives_hostile_clients(
    serve: ServeFactory, record_property: Callable[[str, object], None]
) -> None:
    server = serve("http-hello")
    serve_bytes.attach(server.port)
    record_property("inputs", _run("serve_bytes", serve_bytes.one_input))
    assert server.proc.poll() is None
    assert serve_bytes.answers_normally(server.port).endswith(b"Hello, World!")
