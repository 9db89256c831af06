"""Real engines call the runtime: Podman (through conmon) and containerd (through its runc shim),
each with private storage under a tmp directory, inside a private network namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.conftest import NetNamespace, wait_for
from wasmhost.runtime.cli import DEFAULT_ROOT


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (.ci/run installs it)")
    return path


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload, no-any-return]


def _curl(netns: NetNamespace) -> str:
    return _run(netns.command("curl", "-sS", "-m", "2", "http://127.0.0.1:8080/")).stdout


def _mounts_under(directory: Path) -> list[str]:
    return [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(directory) in line]


def test_podman_run_stop_rm(runtime: Path, http_image: str, tmp: Path, netns: NetNamespace, cgroup_parent: str) -> None:
    podman = [
        _tool("podman"),
        *("--root", str(tmp / "storage"), "--runroot", str(tmp / "run"), "--tmpdir", str(tmp / "tmp")),
        *("--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", str(runtime)),
    ]
    # The runtime's default state root: Podman's `container cleanup` calls `delete` without the
    # --runtime-flag options (Podman 4.3), so a private --root would not reach every call.
    env = dict(os.environ)
    pulled = _run([*podman, "pull", "--tls-verify=false", http_image], env=env)
    assert pulled.returncode == 0, pulled.stderr
    try:
        run = ["run", "-d", "--name", "hello", "--network", "host", "--cgroup-parent", cgroup_parent, http_image]
        ran = _run(netns.command(*podman, *run), env=env)
        assert ran.returncode == 0, ran.stderr
        container_cgroup = f"{cgroup_parent}/libpod-{ran.stdout.strip()}"
        wait_for(lambda: _curl(netns) == "Hello, World!", "the guest to answer through Podman")
        logs = _run([*podman, "logs", "hello"], env=env)
        assert (logs.stdout, logs.stderr) == ("Listening on http://0.0.0.0:8080\n", "")  # the guest's alone
        state = DEFAULT_ROOT / ran.stdout.strip()
        assert (state / "wasmhost.json").exists()  # the container is ours, not runc's
        pid = json.loads((state / "wasmhost.json").read_text())["pid"]
        assert f":{container_cgroup}\n" in Path(f"/proc/{pid}/cgroup").read_text()  # the runtime put it there
        stopped = _run(netns.command(*podman, "stop", "hello"), env=env)
        assert stopped.returncode == 0, stopped.stderr
        status = _run([*podman, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "hello"], env=env)
        assert status.stdout.split() == ["exited", "143"]  # SIGTERM ended it
        assert _curl(netns) == ""
        removed = _run([*podman, "rm", "hello"], env=env)
        assert removed.returncode == 0, removed.stderr
        assert _run([*podman, "ps", "-a", "-q"], env=env).stdout == ""
        assert not state.exists()
        assert _mounts_under(tmp) == []
    finally:
        _run([*podman, "rm", "-f", "-a"], env=env)


@pytest.fixture
def containerd(tmp: Path) -> Iterator[str]:
    """A containerd of this test's own (root, state and socket under tmp); yields the socket."""
    binary = _tool("containerd")
    home = tmp / "containerd"
    home.mkdir()
    socket = home / "containerd.sock"
    (home / "config.toml").write_text(
        "version = 2\n"
        f'root = "{home / "root"}"\nstate = "{home / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{home / "ttrpc.sock"}"\n'
        '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
    )
    log = (home / "containerd.log").open("wb")
    daemon = subprocess.Popen([binary, "--config", str(home / "config.toml")], stdout=log, stderr=log)
    log.close()
    try:
        wait_for(lambda: socket.exists() or daemon.poll() is not None, "containerd's socket")
        if daemon.poll() is not None:
            pytest.fail("containerd did not start: " + (home / "containerd.log").read_text())
        yield str(socket)
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def test_ctr_run_with_the_runtime_as_runc_binary(
    runtime: Path, http_image: str, tmp: Path, netns: NetNamespace, containerd: str, cgroup_parent: str
) -> None:
    """The image runs in the network namespace ctr gives it (--with-ns): the runtime joins it."""
    ctr = [_tool("ctr"), "--address", containerd]
    pulled = _run([*ctr, "image", "pull", "--plain-http", http_image])
    assert pulled.returncode == 0, pulled.stderr
    root = tmp / "runtime"
    output = (tmp / "ctr.out").open("w")
    flags = ["--runc-binary", str(runtime), "--runc-root", str(root), "--with-ns", f"network:{netns.path}"]
    cgroup = f"{cgroup_parent}/hello"
    flags += ["--cgroup", cgroup]
    run = subprocess.Popen(
        [*ctr, "run", *flags, http_image, "hello"],
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    output.close()
    try:
        wait_for(lambda: _curl(netns) == "Hello, World!", "the guest to answer through containerd")
        assert "Listening on http://0.0.0.0:8080" in (tmp / "ctr.out").read_text()
        assert os.listdir(root / "default") == ["hello"]  # the shim's --root: ROOT/NAMESPACE
        tasks = _run([*ctr, "task", "ls"]).stdout
        assert "hello" in tasks and "RUNNING" in tasks
        pid = json.loads((root / "default" / "hello" / "wasmhost.json").read_text())["pid"]
        assert f":{cgroup}\n" in Path(f"/proc/{pid}/cgroup").read_text()
        assert _run([*ctr, "task", "kill", "hello"]).returncode == 0
        assert run.wait(30) == 143  # SIGTERM, as ctr reports a process it ended
        assert _curl(netns) == ""
        assert _run([*ctr, "container", "rm", "hello"]).returncode == 0
        wait_for(lambda: os.listdir(root / "default") == [], "the state directory to go")
    finally:
        if run.poll() is None:
            _run([*ctr, "task", "kill", "-s", "SIGKILL", "hello"])
            run.wait(30)
        _run([*ctr, "task", "rm", "-f", "hello"])
        _run([*ctr, "container", "rm", "hello"])
