"""Bundles that are not Wasm go to runc (or crun): one runtime serves a whole node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runtime.conftest import Runtime
from wasmhost.oci import write_bundle

BUSYBOX = Path("/bin/busybox")
#: What some kernels make the delegates refuse: runc "error setting rlimits ... operation not
#: permitted"; crun on a cgroup v1+v2 hybrid "cgroups in hybrid mode not supported".
KERNEL_REFUSALS = ("rlimit", "cgroups in hybrid mode")


def _native_bundle(directory: Path, program: str, cgroup: str | None = None) -> Path:
    """A tiny rootfs whose only program is busybox-static as /bin/true or /bin/false, and the
    config `runc spec` writes, running it."""
    if not BUSYBOX.exists():
        pytest.fail("busybox-static is not installed (.ci/run installs it)")
    (directory / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, directory / "rootfs" / "bin" / program)
    subprocess.run(["runc", "spec", "--bundle", str(directory)], check=True, timeout=30)
    config = json.loads((directory / "config.json").read_text())
    config["process"].update(args=[f"/bin/{program}"], terminal=False)
    if cgroup is not None:  # else runc's default, /ID at each hierarchy's root
        config["linux"]["cgroupsPath"] = cgroup
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("delegate", ["runc", "crun"])
@pytest.mark.parametrize(("program", "code"), [("true", 0), ("false", 1)])
def test_native_bundle_runs_under_the_delegate(
    rt: Runtime, tmp: Path, delegate: str, program: str, code: int, cgroup_parent: str
) -> None:
    if shutil.which(delegate) is None:
        pytest.fail(f"{delegate} is not installed (.ci/run installs it)")
    bundle = _native_bundle(tmp / "bundle", program, f"{cgroup_parent}/native")
    result = rt.reap(bundle, "native", {**os.environ, "WASMHOST_RUNTIME_DELEGATE": delegate})
    stderr = str(result["create_stderr"])
    if result["create"] != 0 and any(refusal in stderr for refusal in KERNEL_REFUSALS):
        # The delegate ran and the kernel refused it: the message is runc's (or crun's), not ours.
        assert not stderr.startswith("wasmhost-runtime:"), stderr
        pytest.skip(f"{delegate} refused by this kernel: {stderr.strip()}")
    assert result["create"] == 0, stderr
    assert (result["start"], result["exit_code"]) == (0, code)
    # The state is the delegate's own (runc's state.json beside our root), reached through us.
    state = json.loads(rt("state", "native").stdout)
    assert (state["status"], state["bundle"]) == ("stopped", str(bundle))
    assert "wasmhost.json" not in os.listdir(rt.root / "native")
    assert rt("delete", "native").returncode == 0
    assert rt.containers() == []


def test_the_error_comes_from_runc(rt: Runtime, tmp: Path) -> None:
    """A native bundle runc cannot run: runc's own error line, so the hand-over happened."""
    bundle = _native_bundle(tmp / "bundle", "true")
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = "no-such-rootfs"
    (bundle / "config.json").write_text(json.dumps(config))
    done = rt("create", "--bundle", bundle, "broken", env={**os.environ, "WASMHOST_RUNTIME_DELEGATE": "runc"})
    assert done.returncode == 1
    assert "level=error" in done.stderr and "no-such-rootfs" in done.stderr, done.stderr
    assert rt.containers() == []


def test_without_runc_a_native_bundle_is_one_line(rt: Runtime, tmp: Path) -> None:
    bundle = _native_bundle(tmp / "bundle", "true")
    done = rt("create", "--bundle", bundle, "native", env={**os.environ, "PATH": str(tmp / "empty")})
    assert done.returncode == 1
    assert done.stderr == (
        f"wasmhost-runtime: {bundle / 'config.json'}: /bin/true is not a .wasm entrypoint, "
        "and neither runc nor crun is installed to run it\n"
    )
    assert rt.containers() == []


def test_operations_only_runc_has_reach_runc_containers(rt: Runtime, tmp: Path, cgroup_parent: str) -> None:
    """`exec` (kubectl exec, podman exec) on a native container is runc's; on ours, one line."""
    bundle = _native_bundle(tmp / "bundle", "busybox", f"{cgroup_parent}/native")
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["/bin/busybox", "sleep", "60"]
    (bundle / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "WASMHOST_RUNTIME_DELEGATE": "runc"}
    created = rt("create", "--bundle", bundle, "native", env=env, stdout=subprocess.DEVNULL)
    if created.returncode != 0 and any(refusal in created.stderr for refusal in KERNEL_REFUSALS):
        pytest.skip(f"runc refused by this kernel: {created.stderr.strip()}")
    assert created.returncode == 0, created.stderr
    assert rt("start", "native", env=env).returncode == 0
    assert rt("exec", "native", "/bin/busybox", "true", env=env).returncode == 0
    assert rt("exec", "native", "/bin/busybox", "false", env=env).returncode == 1
    assert rt("kill", "native", "KILL", env=env).returncode == 0
    assert rt("delete", "--force", "native", env=env).returncode == 0
    assert rt.containers() == []


def test_runc_only_operations_on_a_wasm_container_are_refused(
    rt: Runtime, guest: Callable[[str], Path], tmp: Path
) -> None:
    write_bundle(guest("print-args"), tmp / "wasm")
    assert rt("create", "--bundle", tmp / "wasm", "w", stdout=subprocess.DEVNULL).returncode == 0
    for operation in (["exec", "w", "/bin/sh"], ["pause", "w"]):
        done = rt(*operation)
        assert (done.returncode, done.stderr) == (
            1,
            f"wasmhost-runtime: {operation[0]}: not supported for Wasm containers\n",
        )
    assert rt("delete", "w").returncode == 0
