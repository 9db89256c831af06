"""OCI image layouts, read back by skopeo and unpacked into runtime bundles by umoci."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.oci.conftest import Registry
from wasmhost.oci import build, push, read_bundle, write_layout


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_layout_files(module: bytes, tmp: Path) -> None:
    built = build(module, "127.0.0.1:5000/demo/app:v1")
    write_layout(built, tmp / "layout")
    assert json.loads((tmp / "layout" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp / "layout" / "index.json").read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert entry["digest"] == built.digest
    assert entry["platform"] == {"os": "wasi", "architecture": "wasm"}
    assert entry["annotations"] == {
        "org.opencontainers.image.ref.name": "v1",
        "io.containerd.image.name": "127.0.0.1:5000/demo/app:v1",
    }
    blobs = sorted(p.name for p in (tmp / "layout" / "blobs" / "sha256").iterdir())
    assert blobs == sorted(d.removeprefix("sha256:") for d in [built.digest, *built.blobs])


def test_layout_keeps_other_tags_and_replaces_the_same_tag(module: bytes, tmp: Path) -> None:
    write_layout(build(module, "ghcr.io/me/app:v1"), tmp)
    write_layout(build(module, "ghcr.io/me/app:v2", "artifact"), tmp)
    newer = build(module + b"\0", "ghcr.io/me/app:v1")
    write_layout(newer, tmp)
    entries = json.loads((tmp / "index.json").read_text())["manifests"]
    tags = {e["annotations"]["org.opencontainers.image.ref.name"]: e["digest"] for e in entries}
    assert tags == {"v1": newer.digest, "v2": build(module, "x.io/a:v2", "artifact").digest}


def test_skopeo_reads_the_layout(module: bytes, tmp: Path) -> None:
    skopeo = _tool("skopeo")
    built = build(module, "127.0.0.1:5000/demo/app:v1")
    write_layout(built, tmp / "layout")
    raw = _run(skopeo, "inspect", "--raw", f"oci:{tmp / 'layout'}:v1")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.encode() == built.manifest


def test_umoci_unpacks_a_linux_platform_image_into_a_runnable_bundle(module: bytes, tmp: Path) -> None:
    umoci = _tool("umoci")
    write_layout(build(module, "127.0.0.1:5000/demo/app:v1", platform="linux/amd64"), tmp / "layout")
    done = _run(umoci, "unpack", "--rootless", "--image", f"{tmp / 'layout'}:v1", str(tmp / "bundle"))
    assert done.returncode == 0, done.stderr
    _check_umoci_bundle(tmp / "bundle", module)


def test_umoci_refuses_wasi_configs_but_unpacks_their_rootfs(module: bytes, tmp: Path) -> None:
    """umoci only generates config.json for os=linux; `raw unpack` still extracts the layer."""
    umoci = _tool("umoci")
    write_layout(build(module, "127.0.0.1:5000/demo/app:v1"), tmp / "layout")
    image = f"{tmp / 'layout'}:v1"
    refused = _run(umoci, "unpack", "--rootless", "--image", image, str(tmp / "bundle"))
    assert refused.returncode != 0 and "unsupported OS: wasi" in refused.stderr
    done = _run(umoci, "raw", "unpack", "--rootless", "--image", image, str(tmp / "rootfs"))
    assert done.returncode == 0, done.stderr
    assert (tmp / "rootfs" / "app.wasm").read_bytes() == module


def test_skopeo_copy_from_registry_then_umoci_unpack(module: bytes, tmp: Path, registry: Registry) -> None:
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    ref = f"{registry.host}/layout/linux:v1"
    push(build(module, ref, platform="linux/amd64"), progress=False)
    copied = _run(skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp / 'layout'}:v1")
    assert copied.returncode == 0, copied.stderr
    done = _run(umoci, "unpack", "--rootless", "--image", f"{tmp / 'layout'}:v1", str(tmp / "bundle"))
    assert done.returncode == 0, done.stderr
    _check_umoci_bundle(tmp / "bundle", module)


def _check_umoci_bundle(bundle: Path, module: bytes) -> None:
    wasm = bundle / "rootfs" / "app.wasm"
    assert wasm.read_bytes() == module
    assert wasm.stat().st_mode & 0o777 == 0o755
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/app.wasm"]
    assert config["annotations"]["module.wasm.image/variant"] == "compat"
    assert config["annotations"]["run.oci.handler"] == "wasm"
    opened = read_bundle(bundle)
    assert opened.module == wasm.resolve()
    assert opened.args == ("/app.wasm",)
