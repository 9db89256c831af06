"""The runtime's command line as an engine calls it, on bundles made by `wasmhost oci bundle`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from tests.runtime.conftest import NetNamespace, Runtime
from wasmhost.runtime import cgroups

Bundle = Callable[..., Path]


def _join(directory: Path, netns: NetNamespace) -> None:
    """Make the bundle name `netns` as its network namespace, as engines do for a pod's."""
    config = json.loads((directory / "config.json").read_text())
    config["linux"]["namespaces"].append({"type": "network", "path": netns.path})
    (directory / "config.json").write_text(json.dumps(config))


def _state(rt: Runtime, container_id: str) -> dict[str, object]:
    done = rt("state", container_id)
    assert done.returncode == 0, done.stderr
    state: dict[str, object] = json.loads(done.stdout)
    return state


def _wait_status(rt: Runtime, container_id: str, status: str, timeout: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while (state := _state(rt, container_id))["status"] != status:
        assert time.monotonic() < deadline, f"still {state['status']}, never {status}"
        time.sleep(0.05)
    return state


def _curl(url: str, *prefix: str) -> str:
    return subprocess.run([*prefix, "curl", "-sS", "-m", "5", url], capture_output=True, text=True, timeout=10).stdout


def test_lifecycle_of_a_server(rt: Runtime, bundle: Bundle, tmp: Path, netns: NetNamespace) -> None:
    """create -> created -> start -> running -> output -> kill -> stopped -> delete -> gone.

    The bundle names a network namespace: the guest listens inside it and nowhere else.
    """
    directory = bundle("http-hello")
    _join(directory, netns)
    out = (tmp / "stdout").open("w")
    created = rt("create", "--bundle", directory, "--pid-file", tmp / "pid", "web", stdout=out, stderr=out)
    out.close()
    assert created.returncode == 0, (tmp / "stdout").read_text()
    pid = int((tmp / "pid").read_text())
    state = _state(rt, "web")
    assert state == {
        "ociVersion": "1.0.2",
        "id": "web",
        "status": "created",
        "pid": pid,
        "bundle": str(directory),
        "created": state["created"],
        "annotations": {"module.wasm.image/variant": "compat", "run.oci.handler": "wasm"},
    }
    assert (rt.root / "web").is_dir()
    assert rt("start", "web").returncode == 0
    assert _state(rt, "web")["status"] == "running"
    deadline = time.monotonic() + 15
    while "Listening on" not in (tmp / "stdout").read_text():
        assert time.monotonic() < deadline, "the guest never said it listens"
        time.sleep(0.05)
    assert _curl("http://127.0.0.1:8080/", *netns.command()) == "Hello, World!"
    assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink(netns.path)
    assert json.loads(rt("ps", "--format", "json", "web").stdout) == [pid]
    assert rt("kill", "web", "TERM").returncode == 0
    assert _wait_status(rt, "web", "stopped")["pid"] == 0
    assert json.loads(rt("ps", "--format", "json", "web").stdout) == []
    assert rt("delete", "web").returncode == 0
    assert not (rt.root / "web").exists()


def test_guest_gets_args_env_and_its_exit_code_reaches_the_engine(rt: Runtime, bundle: Bundle) -> None:
    printed = rt.reap(bundle("print-args", "one", "two words"), "args")
    assert (printed["create"], printed["start"], printed["exit_code"]) == (0, 0, 0)
    exited = rt.reap(bundle("exit-code", "7"), "exit")
    assert exited["exit_code"] == 7
    assert _state(rt, "exit")["status"] == "stopped"


def test_output_goes_to_the_stdio_create_was_given(rt: Runtime, bundle: Bundle, tmp: Path) -> None:
    directory = bundle("print-args", "one", "two words")
    with (tmp / "out").open("w") as out:
        assert rt("create", "--bundle", directory, "p", stdout=out).returncode == 0
    assert (tmp / "out").read_text() == ""  # nothing runs before start
    assert rt("start", "p").returncode == 0
    _wait_status(rt, "p", "stopped")
    assert (tmp / "out").read_text().splitlines() == ["argv[0]=app.wasm", "argv[1]=one", "argv[2]=two words"]


@pytest.mark.parametrize("signal_spec", ["KILL", "SIGKILL", "9"])
def test_kill_takes_names_and_numbers(rt: Runtime, bundle: Bundle, signal_spec: str, netns: NetNamespace) -> None:
    directory = bundle("http-hello")
    _join(directory, netns)
    assert rt("create", "--bundle", directory, "k", stdout=subprocess.DEVNULL).returncode == 0
    assert rt("start", "k").returncode == 0
    assert rt("kill", "--all", "k", signal_spec).returncode == 0
    _wait_status(rt, "k", "stopped")
    again = rt("kill", "k", signal_spec)
    assert (again.returncode, again.stderr) == (1, "wasmhost-runtime: container not running\n")


def test_delete_refuses_a_running_container_unless_forced(rt: Runtime, bundle: Bundle, netns: NetNamespace) -> None:
    directory = bundle("http-hello")
    _join(directory, netns)
    assert rt("create", "--bundle", directory, "d", stdout=subprocess.DEVNULL).returncode == 0
    pid = _state(rt, "d")["pid"]
    assert rt("start", "d").returncode == 0
    refused = rt("delete", "d")
    assert (refused.returncode, refused.stderr) == (
        1,
        "wasmhost-runtime: cannot delete container d that is not stopped: running\n",
    )
    assert rt("delete", "--force", "d").returncode == 0
    assert not (rt.root / "d").exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


def test_a_created_container_can_be_deleted_and_never_runs(rt: Runtime, bundle: Bundle, tmp: Path) -> None:
    with (tmp / "out").open("w") as out:
        assert rt("create", "--bundle", bundle("print-args", "x"), "c", stdout=out).returncode == 0
    assert rt("delete", "c").returncode == 0
    assert not (rt.root / "c").exists()
    time.sleep(0.2)
    assert (tmp / "out").read_text() == ""


def test_unknown_ids_are_one_line_and_exit_1(rt: Runtime) -> None:
    for operation in (["state"], ["start"], ["kill"], ["delete"], ["ps"]):
        done = rt(*operation, "nope")
        assert (done.returncode, done.stderr) == (1, "wasmhost-runtime: container does not exist\n"), operation
    assert rt("delete", "--force", "nope").returncode == 0  # as runc: nothing to force away
    assert not rt.root.exists() or list(rt.root.iterdir()) == []


def test_second_create_with_the_same_id_fails_and_keeps_the_first(rt: Runtime, bundle: Bundle) -> None:
    directory = bundle("print-args")
    assert rt("create", "--bundle", directory, "twice", stdout=subprocess.DEVNULL).returncode == 0
    again = rt("create", "--bundle", directory, "twice")
    assert (again.returncode, again.stderr) == (1, "wasmhost-runtime: container with id exists: twice\n")
    assert _state(rt, "twice")["status"] == "created"
    assert rt("delete", "twice").returncode == 0


def test_bad_bundles_are_one_line_and_leave_no_state(rt: Runtime, bundle: Bundle, tmp: Path) -> None:
    missing = rt("create", "--bundle", tmp / "nowhere", "m")
    assert missing.returncode == 1
    assert missing.stderr == f"wasmhost-runtime: {tmp / 'nowhere' / 'config.json'}: No such file or directory\n"
    directory = bundle("print-args")
    (directory / "rootfs" / "app.wasm").write_bytes(b"not wasm")
    broken = rt("create", "--bundle", directory, "b")
    assert broken.returncode == 1 and broken.stderr.count("\n") == 1, broken.stderr
    assert "process.args[0] /app.wasm" in broken.stderr
    lost = bundle("print-args")
    config = json.loads((lost / "config.json").read_text())
    config["linux"]["namespaces"].append({"type": "network", "path": str(tmp / "no-such-netns")})
    (lost / "config.json").write_text(json.dumps(config))
    unjoinable = rt("create", "--bundle", lost, "n")
    assert (unjoinable.returncode, unjoinable.stderr) == (
        1,
        f"wasmhost-runtime: cannot enter {tmp / 'no-such-netns'}: No such file or directory\n",
    )
    bad_id = rt("create", "--bundle", directory, "../escape")
    assert (bad_id.returncode, bad_id.stderr) == (1, "wasmhost-runtime: invalid container id format: ../escape\n")
    assert not rt.root.exists() or list(rt.root.iterdir()) == []


def test_a_module_that_does_not_link_fails_at_create(rt: Runtime, bundle: Bundle) -> None:
    directory = bundle("print-args")
    wat = '(module (import "env" "nothing" (func)) (func (export "_start")))'
    (directory / "rootfs" / "app.wasm").write_bytes(wasmtime.wat2wasm(wat))
    done = rt("create", "--bundle", directory, "l")
    assert done.returncode == 1
    assert done.stderr == "wasmhost-runtime: /app.wasm: unknown imports: env::nothing\n"
    assert not (rt.root / "l").exists()


def test_global_flags_harmless_are_accepted_the_rest_refused(rt: Runtime, tmp: Path) -> None:
    log = tmp / "log.json"
    done = rt("--systemd-cgroup", "--log", log, "--log-format", "json", "--rootless", "false", "state", "x")
    assert (done.returncode, done.stderr) == (1, "wasmhost-runtime: container does not exist\n")
    entry = json.loads(log.read_text())
    assert (entry["level"], entry["msg"]) == ("error", "container does not exist")
    refused = rt("--log-format", "xml", "state", "x")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "--log-format" in refused.stderr
    unknown = rt("--criu-images", "/x", "state", "x")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1


def test_features_and_version(rt: Runtime) -> None:
    features = json.loads(rt("features").stdout)
    assert features["ociVersionMax"] == "1.0.2" and features["linux"]["namespaces"] == ["network"]
    assert rt("--version").stdout.startswith("wasmhost-runtime version ")


def test_python_m_wasmhost_runtime_is_the_same_runtime(rt: Runtime) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wasmhost", "runtime", "--root", str(rt.root), "state", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (1, "wasmhost-runtime: container does not exist\n")


def test_a_terminal_goes_to_the_console_socket(rt: Runtime, bundle: Bundle, tmp: Path) -> None:
    """`process.terminal`: the guest's stdio is a new pty whose master the engine receives."""
    directory = bundle("print-args", "on a tty")
    config = json.loads((directory / "config.json").read_text())
    config["process"]["terminal"] = True
    (directory / "config.json").write_text(json.dumps(config))
    refused = rt("create", "--bundle", directory, "t")
    assert (refused.returncode, refused.stderr) == (
        1,
        "wasmhost-runtime: cannot allocate tty if runc will detach without setting console socket\n",
    )
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp / "console.sock"))
        server.listen(1)
        created = rt("create", "--bundle", directory, "--console-socket", tmp / "console.sock", "t")
        assert created.returncode == 0, created.stderr
        connection, _ = server.accept()
        with connection:
            name, fds, _, _ = socket.recv_fds(connection, 1024, 1)
    (master,) = fds
    assert name.startswith(b"/dev/pts/")
    assert rt("start", "t").returncode == 0
    output = b""
    with open(master, "rb", buffering=0) as terminal:
        while True:
            try:
                chunk = terminal.read(1024)
            except OSError:  # EIO: the guest closed its side
                break
            if not chunk:
                break
            output += chunk
    assert output.decode().splitlines() == ["argv[0]=app.wasm", "argv[1]=on a tty"]


def test_the_process_joins_the_bundles_cgroup_with_its_limits(rt: Runtime, bundle: Bundle, cgroup_parent: str) -> None:
    mounts = cgroups.hierarchies(Path("/proc/self/mounts").read_text())
    if not mounts:
        pytest.skip("no writable cgroup file system is mounted")
    directory = bundle("print-args")
    name = cgroup_parent.lstrip("/")
    config = json.loads((directory / "config.json").read_text())
    config["linux"]["cgroupsPath"] = f"/{name}/box"
    config["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    config["linux"]["resources"]["cpu"] = {"quota": 50000, "period": 100000}
    (directory / "config.json").write_text(json.dumps(config))
    assert rt("create", "--bundle", directory, "cg", stdout=subprocess.DEVNULL).returncode == 0
    pid = _state(rt, "cg")["pid"]
    memberships = Path(f"/proc/{pid}/cgroup").read_text()
    assert memberships.count(f"/{name}/box\n") == len(mounts), memberships
    for mount, v2 in mounts:
        box = mount / name / "box"
        if (box / "memory.limit_in_bytes").exists():
            assert int((box / "memory.limit_in_bytes").read_text()) == 64 << 20
        if (box / "memory.max").exists():
            assert int((box / "memory.max").read_text()) == 64 << 20
        if (box / "cpu.cfs_quota_us").exists():
            assert int((box / "cpu.cfs_quota_us").read_text()) == 50000
        if v2 and (box / "cpu.max").exists():
            assert (box / "cpu.max").read_text().split() == ["50000", "100000"]
    assert rt("delete", "cg").returncode == 0
    assert not any((mount / name).exists() for mount, _ in mounts)


def test_warnings_go_to_the_log_file_not_the_containers_stderr(rt: Runtime, bundle: Bundle, tmp: Path) -> None:
    """Engines bind files such as /etc/hosts, which WASI cannot preopen: that is logged, and the
    container's output stays the guest's own."""
    directory = bundle("print-args", "x")
    (tmp / "hosts").write_text("127.0.0.1 localhost\n")
    config = json.loads((directory / "config.json").read_text())
    config["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": str(tmp / "hosts")})
    (directory / "config.json").write_text(json.dumps(config))
    log = tmp / "log.json"
    with (tmp / "out").open("w") as out:
        flags = ["--log", log, "--log-format", "json"]
        assert rt(*flags, "create", "--bundle", directory, "w", stdout=out, stderr=out).returncode == 0
        assert rt(*flags, "start", "w").returncode == 0
        _wait_status(rt, "w", "stopped")
    assert (tmp / "out").read_text() == "argv[0]=app.wasm\nargv[1]=x\n"
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["level"] == "warning" and "/etc/hosts skipped" in entry["msg"]
