"""Building images and artifacts: the bytes of each format, reproducibility, refusals."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from wasmhost.oci import FORMATS, BuildError, Format, build
from wasmhost.oci.content import digest_of

REF = "127.0.0.1:5000/demo/app:v1"


def _json(data: bytes) -> dict[str, object]:
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def test_image_is_from_scratch_copy_entrypoint(module: bytes) -> None:
    built = build(module, REF)
    manifest, config = json.loads(built.manifest), json.loads(built.config)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["annotations"] == {"module.wasm.image/variant": "compat", "run.oci.handler": "wasm"}
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": digest_of(built.config),
        "size": len(built.config),
    }
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert layer["digest"] == digest_of(built.layers[0])
    assert (config["os"], config["architecture"]) == ("wasi", "wasm")
    assert config["config"]["Entrypoint"] == ["/app.wasm"]
    assert config["config"]["Labels"]["module.wasm.image/variant"] == "compat"
    tar_bytes = gzip.decompress(built.layers[0])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [digest_of(tar_bytes)]}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.mode, member.uid, member.gid, member.mtime) == ("app.wasm", 0o755, 0, 0, 0)
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == module
    assert built.platform == ("wasi", "wasm")


def test_image_carries_args_env_and_platform(module: bytes) -> None:
    built = build(module, REF, args=["--port", "8080"], env={"B": "2", "A": "1"}, platform="linux/amd64")
    config = json.loads(built.config)
    assert config["config"]["Entrypoint"] == ["/app.wasm"]
    assert config["config"]["Cmd"] == ["--port", "8080"]
    assert config["config"]["Env"] == ["A=1", "B=2"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


def test_image_module_path_gets_parent_directories(module: bytes) -> None:
    built = build(module, REF, module_path="/opt/bin/server.wasm")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(built.layers[0]))) as tar:
        assert [(m.name, m.isdir()) for m in tar.getmembers()] == [
            ("opt", True),
            ("opt/bin", True),
            ("opt/bin/server.wasm", False),
        ]
    assert json.loads(built.config)["config"]["Entrypoint"] == ["/opt/bin/server.wasm"]


def test_artifact_follows_the_cncf_layout(module: bytes) -> None:
    built = build(module, REF, "artifact")
    manifest = json.loads(built.manifest)
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/wasm"]
    assert built.layers == (module,)
    assert json.loads(built.config) == {
        "architecture": "wasm",
        "os": "wasip1",
        "created": "1970-01-01T00:00:00Z",
        "layerDigests": [digest_of(module)],
    }
    assert built.platform is None


def test_wasm_to_oci_is_what_krustlet_pulls(module: bytes) -> None:
    built = build(module, REF, "wasm-to-oci")
    manifest = json.loads(built.manifest)
    assert manifest["config"] == {
        "mediaType": "application/vnd.wasm.config.v1+json",
        "digest": digest_of(b"{}"),
        "size": 2,
    }
    assert manifest["layers"] == [
        {
            "mediaType": "application/vnd.wasm.content.layer.v1+wasm",
            "digest": digest_of(module),
            "size": len(module),
            "annotations": {"org.opencontainers.image.title": "app.wasm"},
        }
    ]
    assert built.config == b"{}"


@pytest.mark.parametrize("format", FORMATS)
def test_builds_are_reproducible(module: bytes, tmp: Path, format: Format) -> None:
    path = tmp / "app.wasm"
    path.write_bytes(module)
    first = build(module, REF, format)
    again = build(path, "ghcr.io/elsewhere/app:v9", format)
    assert first.digest == again.digest
    assert (first.manifest, first.config, first.layers) == (again.manifest, again.config, again.layers)
    assert build(module + b"\0", REF, format).digest != first.digest


def test_report_compressed_image_size(module: bytes) -> None:
    """Compare with the seed article's 989.89 KB for its `FROM scratch` image (run with -s)."""
    for format in FORMATS:
        built = build(module, REF, format)
        packing = "gzip tar" if format == "image" else "raw"
        print(
            f"\n{format}: module {len(module)} bytes -> layer {len(built.layers[0])} bytes ({packing}), "
            f"{built.size} bytes stored with manifest and config"
        )
        assert built.size == len(built.manifest) + len(built.config) + len(built.layers[0])
    assert len(build(module, REF).layers[0]) < len(module) + 1024


@pytest.mark.parametrize(
    ("kwargs", "what", "why"),
    [
        ({"module": b"\0asn\1\0\0\0"}, "module", "not a WebAssembly module (bad magic)"),
        ({"module": b"\0asm"}, "module", "truncated WebAssembly module (4 bytes)"),
        ({"format": "tarball"}, "module", "unknown format 'tarball'"),
        ({"format": "artifact", "env": {"A": "1"}}, "module", "has no args, env or platform"),
        ({"format": "wasm-to-oci", "platform": "linux/amd64"}, "module", "has no args, env or platform"),
        ({"platform": "wasi"}, "wasi", "platform must be OS/ARCH"),
        ({"module_path": "app.wasm"}, "app.wasm", "must be absolute, normalized"),
        ({"module_path": "/a/../app.wasm"}, "/a/../app.wasm", "must be absolute, normalized"),
        ({"ref": "ghcr.io/me/app@sha256:" + "0" * 64}, "ghcr.io/me/app@sha256:", "a build takes a tag"),
    ],
)
def test_build_refusals(module: bytes, kwargs: dict[str, object], what: str, why: str) -> None:
    arguments: dict[str, object] = {"module": module, "ref": REF, **kwargs}
    with pytest.raises(BuildError) as caught:
        build(**arguments)  # type: ignore[arg-type]
    assert caught.value.what.startswith(what)
    assert why in caught.value.why


def test_an_artifact_says_whether_it_holds_a_module_or_a_component(module: bytes) -> None:
    """The CNCF Wasm artifact config's os: wasip1 for a core module, wasip2 for a component."""
    component = b"\0asm\x0d\0\x01\0"
    for wasm, wasi in ((module, "wasip1"), (component, "wasip2")):
        built = build(wasm, REF, "artifact")
        assert json.loads(built.config)["os"] == wasi


def test_missing_file_is_named(tmp: Path) -> None:
    with pytest.raises(BuildError) as caught:
        build(tmp / "missing.wasm", REF)
    assert str(caught.value) == f"{tmp / 'missing.wasm'}: No such file or directory"
