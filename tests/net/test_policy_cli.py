"""Bad network settings on the command line: one line naming the value, exit 2, nothing run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli

HOST_LINE = "wasmhost: bind address {!r}: not an IP address (give one, e.g. 127.0.0.1 or ::1)\n"


@pytest.mark.parametrize("command", ["run", "serve"])
@pytest.mark.parametrize("host", ["localhost", "not-an-addr"])
def test_host_must_be_an_ip_address(guest: Callable[[str], Path], command: str, host: str) -> None:
    done = run_cli(command, "--host", host, guest("http-hello"), timeout=30)
    assert done.returncode == 2
    assert done.stderr == HOST_LINE.format(host)
    assert done.stdout == ""


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_idle_backoff_must_be_finite(guest: Callable[[str], Path], value: str) -> None:
    done = run_cli("serve", "--idle-backoff", value, guest("http-hello"), timeout=30)
    assert done.returncode == 2
    assert done.stderr == f"wasmhost: idle backoff: must be a non-negative number of seconds, got {float(value)}\n"


def test_published_address_must_be_an_ip_address(guest: Callable[[str], Path]) -> None:
    done = run_cli("serve", "-p", "localhost:0:8080", guest("http-hello"), timeout=30)
    assert done.returncode == 2
    assert done.stderr == (
        "wasmhost: -p localhost:0:8080: published address 'localhost': not an IP address"
        " (give one, e.g. 127.0.0.1 or ::1)\n"
    )
