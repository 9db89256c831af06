"""Name lookups against a real resolver (issue 12, items 4 and 16): under default deny no
query leaves the host, a lookup that gets no answer fails after RESOLVE_TIMEOUT, and stop()
ends one at once.

The guest runs in a network namespace of its own whose /etc/resolv.conf (bind-mounted in a
mount namespace of its own) names 127.0.0.1, where a DNS server counts queries and never
answers; its /etc/hosts knows allowed.example. Nothing outside the namespaces changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.wasi.test_sock_policy import LOOKUP
from wasmhost.wasi.abi import Errno
from wasmhost.wasi.sockets import RESOLVE_TIMEOUT

SCRIPT = r"""
import json, socket, sys, threading, time
from wasmhost import Host, Instance, Interrupted, Module
from wasmhost.net.policy import Network, Rule

queries = []
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("127.0.0.1", 53))
threading.Thread(target=lambda: [queries.append(dns.recvfrom(512)) for _ in iter(int, 1)], daemon=True).start()
wat = open(sys.argv[1]).read()

def lookup(name, network, stop_after=None):
    module = Module(wat.replace("NAME_LEN", str(len(name) + 1)).replace("NAME", name).encode())
    with Instance(module, Host(network=network)) as instance:
        if stop_after is not None:
            threading.Timer(stop_after, instance.stop).start()
        start = time.monotonic()
        try:
            outcome = instance.run()
        except Interrupted:
            outcome = "interrupted"
        return outcome, time.monotonic() - start

named = Network(outbound=Rule.parse("allowed.example:80"))
results = {
    "deny": lookup("secret.attacker.example", Network()),
    "named": lookup("allowed.example", named),
    "named_other": lookup("secret.allowed.example", named),
}
time.sleep(0.2)
results["deny_queries"] = len(queries)
everything = Network(outbound=Rule.parse("0.0.0.0/0"))
results["timeout"] = lookup("slow.example", everything)
results["timeout_queries"] = len(queries)
results["stop"] = lookup("stopped.example", everything, stop_after=0.5)
print(json.dumps(results), flush=True)
"""


@pytest.fixture
def namespaced(tmp_path: Path) -> list[str]:
    """The command prefix that runs a program in fresh network and mount namespaces."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare(1) and ip(8)")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.9 allowed.example\n")
    mounts = f"mount --bind {resolv} /etc/resolv.conf && mount --bind {hosts} /etc/hosts"
    setup = f'ip link set lo up && {mounts} && exec "$@"'
    probe = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create namespaces here: {probe.stderr.decode().strip()}")
    return ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", setup, "sh"]


def test_lookups_are_denied_bounded_and_interruptible(namespaced: list[str], tmp_path: Path) -> None:
    (tmp_path / "lookup.wat").write_text(LOOKUP)
    (tmp_path / "script.py").write_text(SCRIPT)
    start = time.monotonic()
    done = subprocess.run(
        [*namespaced, sys.executable, str(tmp_path / "script.py"), str(tmp_path / "lookup.wat")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    total = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    print(results, f"total {total:.2f} s")
    # Default deny: refused without a single packet to port 53; a name a rule was made from
    # is looked up (here /etc/hosts answers), a name under it is not.
    assert results["deny"][0] == Errno.AIFAIL
    assert results["named"][0] == 0
    assert results["named_other"][0] == Errno.AIFAIL
    assert results["deny_queries"] == 0
    # An allowed lookup the server never answers: AIAGAIN after the timeout, not the resolver's 30 s.
    code, elapsed = results["timeout"]
    assert code == Errno.AIAGAIN
    assert RESOLVE_TIMEOUT - 0.2 < elapsed < RESOLVE_TIMEOUT + 2
    assert results["timeout_queries"] > 0
    # stop() ends a lookup in progress.
    outcome, elapsed = results["stop"]
    assert outcome == "interrupted"
    assert elapsed < 2
    # The abandoned lookup threads (still waiting for the resolver's 30 s) did not hold up exit.
    assert total < 25
