"""Running straight from a registry reference, offline from the cache, and from runtime bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServeFactory, run_cli, serve_with_listen_argument
from tests.oci.conftest import Registry

Guest = Callable[[str], Path]
DATA = Path(__file__).parent / "data"


def _curl(port: int) -> str:
    return subprocess.run(
        ["curl", "-sS", f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=10
    ).stdout


def test_serve_from_registry_then_offline_from_cache(
    guest: Guest, serve: ServeFactory, private_registry: Registry
) -> None:
    ref = f"{private_registry.host}/demo/http-hello:v1"
    pushed = run_cli("oci", "push", guest("http-hello"), ref)
    assert pushed.returncode == 0, pushed.stderr
    online = serve(f"oci://{ref}")
    assert _curl(online.port) == "Hello, World!"
    assert online.stop()[0] == 0
    private_registry.stop()
    offline = serve(f"oci://{ref}")
    assert _curl(offline.port) == "Hello, World!"
    assert offline.stop()[0] == 0


@pytest.mark.parametrize("fmt", ["image", "artifact", "wasm-to-oci"])
def test_run_each_format_by_tag_and_digest(guest: Guest, registry: Registry, fmt: str) -> None:
    ref = f"{registry.host}/run/exit-code-{fmt}:v1"
    pushed = run_cli("oci", "push", "--format", fmt, guest("exit-code"), ref)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.split("@", 1)[1].split()[0]
    assert run_cli("run", f"oci://{ref}", "7").returncode == 7
    assert run_cli("run", f"oci://{registry.host}/run/exit-code-{fmt}@{digest}", "3").returncode == 3


def test_image_default_args_come_first(guest: Guest, registry: Registry) -> None:
    ref = f"{registry.host}/run/exit-code-cmd:v1"
    assert run_cli("oci", "push", guest("exit-code"), ref, "--", "42").returncode == 0
    assert run_cli("run", f"oci://{ref}").returncode == 42


def _guest_argv(done: subprocess.CompletedProcess[str]) -> list[str]:
    """argv[1:] as the print-args guest printed it."""
    assert done.returncode == 0, done.stderr
    return [line.split("=", 1)[1] for line in done.stdout.splitlines()[1:]]


@pytest.mark.parametrize("dash", [[], ["--"]], ids=["plain", "double-dash"])
def test_run_reference_and_bundle_take_guest_arguments(
    guest: Guest, registry: Registry, tmp_path: Path, dash: list[str]
) -> None:
    """The image's Cmd or the bundle's process.args first, then every word after the reference or --bundle."""
    ref = f"{registry.host}/args/print-args:v1"
    assert run_cli("oci", "push", guest("print-args"), ref, "--", "from-image").returncode == 0
    done = run_cli("run", f"oci://{ref}", *dash, "127.0.0.1:18081", "--timeout", "1")
    assert _guest_argv(done) == ["from-image", "127.0.0.1:18081", "--timeout", "1"]
    bundle = tmp_path / "bundle"
    assert run_cli("oci", "bundle", guest("print-args"), bundle, "--", "from-bundle").returncode == 0
    done = run_cli("run", "--bundle", bundle, *dash, "127.0.0.1:18081", "--", "x")
    assert _guest_argv(done) == ["from-bundle", "127.0.0.1:18081", "--", "x"]


@pytest.mark.parametrize("dash", [False, True], ids=["plain", "double-dash"])
def test_serve_reference_and_bundle_take_guest_arguments(
    guest: Guest, serve: ServeFactory, registry: Registry, tmp_path: Path, dash: bool
) -> None:
    """tokio_wasi's examples take their listen address as argv[1], from a registry or a bundle too."""
    ref = f"{registry.host}/args/http-hello:v1"
    assert run_cli("oci", "push", guest("http-hello"), ref).returncode == 0
    bundle = tmp_path / "bundle"
    assert run_cli("oci", "bundle", guest("http-hello"), bundle).returncode == 0
    for served in (
        serve_with_listen_argument(serve, f"oci://{ref}", dash=dash),
        serve_with_listen_argument(serve, None, "--bundle", str(bundle), dash=dash),
    ):
        assert _curl(served.port) == "Hello, World!"
        assert served.stop()[0] == 0


def test_unknown_reference_is_one_line(registry: Registry) -> None:
    done = run_cli("run", f"oci://{registry.host}/nothing/here:v1")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("wasmhost: ")
    assert "Traceback" not in done.stderr


def test_run_bundle_written_by_oci_bundle(guest: Guest, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    bundle = tmp_path / "bundle"
    written = run_cli("oci", "bundle", "--mount", f"{data}:/sandbox", guest("wasi-suite"), bundle, "--", "/sandbox")
    assert written.returncode == 0, written.stderr
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/app.wasm", "/sandbox"]
    assert config["root"]["readonly"] is True
    done = run_cli("run", "--env", "SUITE_VAR=value=with=equals", "--bundle", bundle, "arg with space", "ünïcode")
    assert "FAIL" not in done.stdout and done.returncode == 0, done.stdout + done.stderr
    assert list(data.iterdir()) == []  # the suite cleans up after itself, inside the mount


def test_run_bundle_logs_every_host_directory_it_exposes(guest: Guest, tmp_path: Path) -> None:
    data, shared, bundle = tmp_path / "data", tmp_path / "shared", tmp_path / "bundle"
    data.mkdir()
    shared.mkdir()
    mounts = ["--mount", f"{data}:/sandbox", "--mount", f"{shared}:/shared:ro"]
    written = run_cli("oci", "bundle", *mounts, guest("exit-code"), bundle, "--", "3")
    assert written.returncode == 0, written.stderr
    done = run_cli("run", "--log-level", "info", "--bundle", bundle)
    assert done.returncode == 3, done.stderr
    where = bundle / "config.json"
    assert [line for line in done.stderr.splitlines() if " exposes " in line] == [
        f"wasmhost: {where}: exposes host {bundle / 'rootfs'} at / (read-only)",
        f"wasmhost: {where}: exposes host {data} at /sandbox (read-write)",
        f"wasmhost: {where}: exposes host {shared} at /shared (read-only)",
    ]
    assert " exposes " not in run_cli("run", "--bundle", bundle).stderr  # info is not the default for run


def test_run_bundle_shaped_like_the_seed_crun_config(guest: Guest, tmp_path: Path) -> None:
    """The article's crun config.json (read-only root, args ["/http-server.wasm"])."""
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    shutil.copy(DATA / "crun-config.json", bundle / "config.json")
    shutil.copy(guest("exit-code"), bundle / "rootfs" / "http-server.wasm")
    assert run_cli("run", "--bundle", bundle, "5").returncode == 5
    broken = bundle / "rootfs" / "http-server.wasm"
    broken.write_text("not wasm")
    done = run_cli("run", "--bundle", bundle)
    assert done.returncode == 2 and done.stderr.startswith("wasmhost: ") and done.stderr.count("\n") == 1


def test_bundle_without_config_is_bad_input(tmp_path: Path) -> None:
    done = run_cli("run", "--bundle", tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"wasmhost: {tmp_path / 'config.json'}: ") and done.stderr.count("\n") == 1


def test_run_a_bundle_unpacked_by_umoci(guest: Guest, tmp_path: Path) -> None:
    """Image -> OCI layout -> umoci unpack -> wasmhost run --bundle (crun's wasm-handler path)."""
    umoci = shutil.which("umoci")
    if umoci is None:
        pytest.skip("umoci is not installed")
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    built = run_cli(
        "oci", "build", "--platform", "linux/amd64", guest("exit-code"), "-t", "demo/exit:v1", "--output", layout
    )
    assert built.returncode == 0, built.stderr
    unpacked = subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)], capture_output=True, text=True
    )
    assert unpacked.returncode == 0, unpacked.stderr
    assert run_cli("run", "--bundle", bundle, "6").returncode == 6
