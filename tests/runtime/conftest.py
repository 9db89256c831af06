"""Fixtures for the OCI runtime: the installed `wasmhost-runtime` script, a private state root,
bundles, a private network namespace, and the OCI tests' registry."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.conftest import ROOT
from tests.oci.conftest import Registry, registry, tmp  # noqa: F401  (fixtures shared with the OCI tests)

RUNTIME = Path(sys.executable).parent / "wasmhost-runtime"


@pytest.fixture(scope="session")
def runtime() -> Path:
    """The console script as pip installed it: what engines are pointed at."""
    if not RUNTIME.exists():
        pytest.fail(f"{RUNTIME} is missing: pip install -e . installs the wasmhost-runtime script")
    return RUNTIME


@attrs.frozen
class Runtime:
    """`wasmhost-runtime --root ROOT ...` with captured output."""

    binary: Path
    root: Path

    def __call__(self, *args: str | os.PathLike[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run it; output is captured unless `stdout` / `stderr` say where the container's goes.

        Captured through files, not pipes: the container inherits create's stdio and holds it
        open, so reading a pipe to its end would wait for the container to exit.
        """
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            kwargs.setdefault("stdout", out)
            kwargs.setdefault("stderr", err)
            command = [str(self.binary), "--root", str(self.root), *map(str, args)]
            code = subprocess.run(command, timeout=60, **kwargs).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(command, code, out.read(), err.read())

    def reap(self, bundle: Path, container_id: str, env: dict[str, str] | None = None) -> dict[str, object]:
        """create + start + wait, as an engine that reaps the container's process does (reaper.py)."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.runtime.reaper", str(self.binary), str(self.root), str(bundle), container_id],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
        return result

    def containers(self) -> list[str]:
        return sorted(path.name for path in self.root.iterdir()) if self.root.exists() else []


@pytest.fixture
def rt(runtime: Path, tmp: Path) -> Iterator[Runtime]:  # noqa: F811
    """The runtime on a private state root; containers a failed test left are force-deleted."""
    running = Runtime(runtime, tmp / "state")
    yield running
    for container_id in running.containers():
        running("delete", "--force", container_id)


@pytest.fixture
def bundle(guest: Callable[[str], Path], tmp: Path) -> Callable[..., Path]:  # noqa: F811
    """`bundle("print-args", "a", "b")`: a bundle made by `wasmhost oci bundle`."""

    def make(name: str, *args: str, env: str | None = None) -> Path:
        directory = tmp / f"bundle-{name}-{len(list(tmp.glob('bundle-*')))}"
        flags = ["--env", env] if env else []
        done = subprocess.run(
            [sys.executable, "-m", "wasmhost", "oci", "bundle", *flags, str(guest(name)), str(directory), "--", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return directory

    return make


@attrs.frozen
class NetNamespace:
    """A network namespace held by `unshare --net sleep`, with its loopback up."""

    holder: subprocess.Popen[bytes]

    @property
    def path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    def command(self, *args: str) -> list[str]:
        """`args` run inside the namespace (nsenter joins the network namespace only, so the
        cgroup file system stays visible, which `ip netns exec` would hide)."""
        return ["nsenter", f"--net={self.path}", *args]


@pytest.fixture
def netns() -> Iterator[NetNamespace]:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.fail("unshare/nsenter (util-linux) are missing")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "3600"], stderr=subprocess.PIPE)
    try:
        namespace = NetNamespace(holder)
        for _ in range(100):  # until unshare has exec'd sleep in the new namespace
            if os.readlink(namespace.path) != os.readlink("/proc/self/ns/net"):
                break
            if holder.poll() is not None:
                assert holder.stderr is not None
                pytest.skip(f"unshare --net refused: {holder.stderr.read().decode().strip()}")
            time.sleep(0.02)
        subprocess.run(namespace.command("ip", "link", "set", "lo", "up"), check=True, timeout=10)
        yield namespace
    finally:
        holder.kill()
        holder.wait()
        assert holder.stderr is not None
        holder.stderr.close()


@pytest.fixture(scope="session")
def http_image(guest: Callable[[str], Path], registry: Registry) -> str:  # noqa: F811
    """The http-hello image (`wasmhost oci push`, the image format) in the local registry."""
    ref = f"{registry.host}/runtime/http-hello:v1"
    done = subprocess.run(
        [sys.executable, "-m", "wasmhost", "oci", "push", str(guest("http-hello")), ref],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return ref


def _cgroup_mounts() -> list[Path]:
    fields = (line.split() for line in Path("/proc/self/mounts").read_text().splitlines())
    return [Path(f[1]) for f in fields if len(f) > 2 and f[2] in ("cgroup", "cgroup2")]


@pytest.fixture
def cgroup_parent(tmp: Path) -> Iterator[str]:  # noqa: F811
    """A cgroup path below this process's own (an engine's default, such as Podman's
    /libpod_parent, would be outside the cgroup the tests run in). Afterwards every directory
    made for it in any hierarchy, by the runtime or an engine, is removed."""
    own = max((line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()), key=len)
    path = f"{own.rstrip('/')}/wasmhost-test-{tmp.name}"
    levels = [Path(*Path(path.lstrip("/")).parts[: n + 1]) for n in range(len(Path(path).parts) - 1)]
    existed = {mount: [level for level in levels if (mount / level).exists()] for mount in _cgroup_mounts()}
    yield path
    for mount, kept in existed.items():
        made = [mount / level for level in levels if level not in kept]
        below = sorted((d for d in (mount / path.lstrip("/")).rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for directory in [*below, *reversed(made)]:
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
