"""Running straight from a registry reference, offline from the cache, and from runtime bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServeFactory, run_cli
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
