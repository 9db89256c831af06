"""`wasmhost oci ...` through the real command line entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.oci.conftest import PASSWORD, USER, Registry, free_port
from wasmhost.cli import main
from wasmhost.oci import build, read_bundle


@pytest.fixture
def module_file(module: bytes, tmp: Path) -> Path:
    path = tmp / "app.wasm"
    path.write_bytes(module)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["oci", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_output_writes_a_layout(capsys: pytest.CaptureFixture[str], module: bytes, module_file: Path) -> None:
    layout = module_file.parent / "layout"
    code, out, err = run(capsys, "build", module_file, "-t", "ghcr.io/me/app:v1", "--output", layout)
    built = build(module, "ghcr.io/me/app:v1")
    assert (code, err) == (0, "")
    assert out == f"ghcr.io/me/app:v1@{built.digest} (image, {built.size} bytes)\n"
    assert json.loads((layout / "index.json").read_text())["manifests"][0]["digest"] == built.digest


def test_push_then_pull(
    capsys: pytest.CaptureFixture[str], module: bytes, module_file: Path, registry: Registry, docker_config: Path
) -> None:
    ref = f"{registry.host}/cli/app:v1"
    code, out, _ = run(capsys, "push", module_file, ref, "--format", "wasm-to-oci")
    assert code == 0 and out.startswith(f"{ref}@sha256:")
    target = module_file.parent / "pulled.wasm"
    code, out, err = run(capsys, "pull", f"oci://{ref}", "-o", target)
    assert (code, out, err) == (0, f"{target}\n", "")
    assert target.read_bytes() == module


def test_build_push_with_password_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    module_file: Path,
    auth_registry: Registry,
    docker_config: Path,
) -> None:
    ref = f"{auth_registry.host}/cli/app:v1"
    code, _, err = run(capsys, "build", module_file, "-t", ref, "--push")
    assert (code, err) == (1, f"wasmhost: {ref}: authentication required (401 Unauthorized)\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    code, out, err = run(capsys, "build", module_file, "-t", ref, "--push", "--username", USER, "--password-stdin")
    assert (code, err) == (0, "") and out.startswith(f"{ref}@sha256:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "missing.wasm", "-t", "ghcr.io/me/app:v1"], "wasmhost: missing.wasm: No such file or directory"),
        (["build", "{module}", "-t", "ghcr.io/Me/App"], "wasmhost: ghcr.io/Me/App: repository names must be lowercase"),
        (["pull", "oci://"], "wasmhost: oci://: empty reference"),
        (["push", "{module}", "ghcr.io/me/app:v1", "--password-stdin"], "wasmhost: --username: "),
        (["bundle", "missing.wasm", "{dir}"], "wasmhost: missing.wasm: No such file or directory"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], module_file: Path, argv: list[str], message: str
) -> None:
    filled = [a.format(module=module_file, dir=module_file.parent / "bundle") for a in argv]
    code, out, err = run(capsys, *filled)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


def test_unreachable_registry_exits_1(capsys: pytest.CaptureFixture[str], docker_config: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    code, out, err = run(capsys, "pull", f"{host}/app:v1")
    assert (code, out) == (1, "")
    assert err == f"wasmhost: {host}/app:v1: registry {host} unreachable (connection refused)\n"


def test_bundle_from_a_file_and_from_a_reference(
    capsys: pytest.CaptureFixture[str], module: bytes, module_file: Path, registry: Registry, docker_config: Path
) -> None:
    target = module_file.parent / "from-file"
    code, out, _ = run(capsys, "bundle", module_file, target, "--env", "A=1", "--mount", f"{target.parent}:/data:ro")
    assert (code, out) == (0, f"{target / 'config.json'}\n")
    bundle = read_bundle(target)
    assert ("A", "1") in bundle.env and bundle.mounts[1].guest == "/data" and bundle.mounts[1].read_only

    ref = f"{registry.host}/cli/bundle:v1"
    run(capsys, "push", "--env", "B=2", module_file, ref, "--", "--port", "8080")
    target = module_file.parent / "from-ref"
    code, out, _ = run(capsys, "bundle", f"oci://{ref}", target, "--", "-v")
    assert code == 0
    bundle = read_bundle(target)
    assert bundle.args == ("/app.wasm", "--port", "8080", "-v")
    assert ("B", "2") in bundle.env
    assert bundle.module.read_bytes() == module


def test_offline_pull_says_so(
    capsys: pytest.CaptureFixture[str], module_file: Path, private_registry: Registry, docker_config: Path
) -> None:
    ref = f"{private_registry.host}/cli/offline:v1"
    run(capsys, "push", module_file, ref)
    code, online, _ = run(capsys, "pull", ref)
    private_registry.stop()
    code, offline, err = run(capsys, "pull", ref)
    assert (code, offline) == (0, online)
    assert err.startswith(f"wasmhost: {ref}: registry unreachable, using the cached sha256:")
