"""Push and pull against a real distribution registry, read back by skopeo."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.oci.conftest import (
    PASSWORD,
    USER,
    Proxy,
    Registry,
    free_port,
    image_config,
    publish,
    write_docker_login,
)
from wasmhost.oci import (
    AccessDenied,
    AuthenticationRequired,
    Cache,
    Credentials,
    DigestMismatch,
    Format,
    NotFound,
    RegistryError,
    Unreachable,
    UnsupportedMediaType,
    build,
    pull,
    push,
    resolve_module,
)
from wasmhost.oci.builder import tar_layer
from wasmhost.oci.content import Descriptor, digest_of

FORMATS: list[Format] = ["image", "artifact", "wasm-to-oci"]


def _skopeo(*args: str) -> str:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed")
    done = subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("format", FORMATS)
def test_push_pull_round_trip(module: bytes, registry: Registry, tmp: Path, format: Format) -> None:
    ref = f"{registry.host}/roundtrip/{format}:v1"
    built = build(module, ref, format)
    pinned = push(built, progress=False)
    assert pinned.digest == built.digest
    pulled = pull(f"oci://{ref}", cache=Cache(tmp), progress=False)
    assert pulled.path.read_bytes() == module
    assert pulled.digest == digest_of(module)
    assert pulled.reference.digest == built.digest
    assert pulled.path.is_relative_to(tmp) and not pulled.offline
    if format == "image":
        assert pulled.args == ("/app.wasm",)
    by_digest = pull(f"{registry.host}/roundtrip/{format}@{built.digest}", cache=Cache(tmp / "other"))
    assert by_digest.path.read_bytes() == module


def test_push_skips_blobs_already_there_and_is_idempotent(module: bytes, registry: Registry) -> None:
    built = build(module, f"{registry.host}/again/app:v1")
    assert push(built, progress=False) == push(built, progress=False)
    assert push(built, f"{registry.host}/again/app:v2", progress=False).digest == built.digest


def test_skopeo_reads_the_pushed_image(module: bytes, registry: Registry) -> None:
    ref = f"{registry.host}/skopeo/image:v1"
    built = build(module, ref, args=["--port", "8080"], env={"RUST_LOG": "info"})
    push(built, progress=False)
    raw = _skopeo("--raw", f"docker://{ref}")
    assert raw.encode() == built.manifest
    manifest = json.loads(raw)
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    config = json.loads(_skopeo("--config", f"docker://{ref}"))
    assert (config["os"], config["architecture"]) == ("wasi", "wasm")
    assert config["config"]["Entrypoint"] == ["/app.wasm"]
    assert config["config"]["Cmd"] == ["--port", "8080"]
    assert config["config"]["Env"] == ["RUST_LOG=info"]
    assert config["config"]["Labels"]["module.wasm.image/variant"] == "compat"
    summary = json.loads(_skopeo(f"docker://{ref}"))
    assert (summary["Os"], summary["Architecture"], summary["Digest"]) == ("wasi", "wasm", built.digest)


@pytest.mark.parametrize(
    ("format", "config_type", "layer_type"),
    [
        ("artifact", "application/vnd.wasm.config.v0+json", "application/wasm"),
        ("wasm-to-oci", "application/vnd.wasm.config.v1+json", "application/vnd.wasm.content.layer.v1+wasm"),
    ],
)
def test_skopeo_reads_the_pushed_artifacts(
    module: bytes, registry: Registry, format: Format, config_type: str, layer_type: str
) -> None:
    ref = f"{registry.host}/skopeo/{format}:v1"
    built = build(module, ref, format)
    push(built, progress=False)
    manifest = json.loads(_skopeo("--raw", f"docker://{ref}"))
    assert manifest["config"]["mediaType"] == config_type
    assert [(layer["mediaType"], layer["size"]) for layer in manifest["layers"]] == [(layer_type, len(module))]
    config = json.loads(_skopeo("--config", "--raw", f"docker://{ref}"))
    if format == "artifact":
        assert config == {
            "architecture": "wasm",
            "os": "wasip1",
            "created": "1970-01-01T00:00:00Z",
            "layerDigests": [digest_of(module)],
        }
    else:
        assert config == {}


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def test_pull_the_layer_types_seen_in_the_wild(module: bytes, registry: Registry, tmp: Path) -> None:
    host, cache = registry.host, Cache(tmp)
    docker_config = "application/vnd.docker.container.image.v1+json"
    docker_layer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    cases: dict[str, tuple[dict[str, object], str, list[bytes]]] = {}

    solo_config = b"{}"
    cases["solo/oci:v1"] = (
        {
            "config": Descriptor.of("application/vnd.module.wasm.config.v1+json", solo_config).to_json(),
            "layers": [Descriptor.of("application/vnd.module.wasm.content.layer.v1+wasm", module).to_json()],
        },
        "application/vnd.oci.image.manifest.v1+json",
        [solo_config, module],
    )
    base = _gzip(tar_layer({"/etc/motd": b"hello\n"}))
    app = _gzip(tar_layer({"/srv/server.wasm": module}))
    config = image_config({"Entrypoint": ["server.wasm"], "WorkingDir": "/srv"})
    cases["docker/entrypoint:v1"] = (
        {
            "config": Descriptor.of(docker_config, config).to_json(),
            "layers": [Descriptor.of(docker_layer, layer).to_json() for layer in (base, app)],
        },
        "application/vnd.docker.distribution.manifest.v2+json",
        [config, base, app],
    )
    compat = tar_layer({"/plugin.wasm": module, "/runtime-config.json": b"{}"})
    plain_config = image_config({})
    cases["solo/compat:v1"] = (
        {
            "config": Descriptor.of("application/vnd.oci.image.config.v1+json", plain_config).to_json(),
            "layers": [Descriptor.of("application/vnd.oci.image.layer.v1.tar", compat).to_json()],
        },
        "application/vnd.oci.image.manifest.v1+json",
        [plain_config, compat],
    )
    for name, (manifest, media_type, blobs) in cases.items():
        publish(host, name, manifest, media_type, blobs)
        pulled = pull(f"oci://{host}/{name}", cache=cache, progress=False)
        assert pulled.path.read_bytes() == module, name
    pulled = pull(f"oci://{host}/docker/entrypoint:v1", cache=cache, progress=False)
    assert (pulled.args, pulled.cwd, pulled.media_type) == (("server.wasm",), "/srv", docker_layer)


def test_pull_picks_the_wasi_entry_of_an_index(module: bytes, registry: Registry, tmp: Path) -> None:
    wasm = build(module, f"{registry.host}/multi/app:wasm")
    linux = build(module + b"\0", f"{registry.host}/multi/app:linux", platform="linux/amd64")
    push(wasm, progress=False)
    push(linux, progress=False)
    index = {
        "manifests": [
            {**linux.descriptor.to_json(), "platform": {"os": "linux", "architecture": "amd64"}},
            wasm.descriptor.to_json(),
        ]
    }
    digest = publish(registry.host, "multi/app:v1", index, "application/vnd.oci.image.index.v1+json", [])
    pulled = pull(f"oci://{registry.host}/multi/app:v1", cache=Cache(tmp), progress=False)
    assert pulled.path.read_bytes() == module
    assert pulled.reference.digest == digest


def test_unsupported_layers_are_refused_by_name(module: bytes, registry: Registry, tmp: Path) -> None:
    config = image_config({"Entrypoint": ["/app.wasm"]})
    layer = b"(\xb5/\xfd not really zstd"
    manifest = {
        "config": Descriptor.of("application/vnd.oci.image.config.v1+json", config).to_json(),
        "layers": [Descriptor.of("application/vnd.oci.image.layer.v1.tar+zstd", layer).to_json()],
    }
    publish(registry.host, "odd/zstd:v1", manifest, "application/vnd.oci.image.manifest.v1+json", [config, layer])
    with pytest.raises(UnsupportedMediaType) as caught:
        pull(f"{registry.host}/odd/zstd:v1", cache=Cache(tmp), progress=False)
    assert str(caught.value) == (
        f"{registry.host}/odd/zstd:v1: unsupported layer media type application/vnd.oci.image.layer.v1.tar+zstd"
    )


def test_an_entrypoint_that_is_not_wasm_is_refused(registry: Registry, tmp: Path) -> None:
    layer = _gzip(tar_layer({"/bin/app": b"#!/bin/sh\necho hi\n"}))
    config = image_config({"Entrypoint": ["/bin/app"]})
    manifest = {
        "config": Descriptor.of("application/vnd.oci.image.config.v1+json", config).to_json(),
        "layers": [Descriptor.of("application/vnd.oci.image.layer.v1.tar+gzip", layer).to_json()],
    }
    publish(registry.host, "odd/shell:v1", manifest, "application/vnd.oci.image.manifest.v1+json", [config, layer])
    cache = Cache(tmp)
    with pytest.raises(UnsupportedMediaType, match="/bin/app: not a WebAssembly module"):
        pull(f"{registry.host}/odd/shell:v1", cache=cache, progress=False)
    assert [p for p in cache.root.rglob("*") if p.is_file()] == []


def test_missing_tag_is_a_clean_404(registry: Registry, tmp: Path) -> None:
    with pytest.raises(NotFound) as caught:
        pull(f"oci://{registry.host}/nothing/here:v1", cache=Cache(tmp), progress=False)
    assert str(caught.value) == f"{registry.host}/nothing/here:v1: manifest not found (404 Not Found)"


def test_resolve_module_works_offline_from_the_cache(module: bytes, private_registry: Registry) -> None:
    ref = f"{private_registry.host}/offline/app:v1"
    built = build(module, ref)
    push(built, progress=False)
    online = resolve_module(f"oci://{ref}")
    private_registry.stop()
    assert resolve_module(f"oci://{ref}") == online
    assert resolve_module(f"oci://{private_registry.host}/offline/app@{built.digest}") == online
    offline = pull(f"oci://{ref}", progress=False)
    assert offline.offline and offline.reference.digest == built.digest
    assert offline.path.read_bytes() == module
    with pytest.raises(Unreachable) as caught:
        resolve_module(f"oci://{private_registry.host}/offline/never-pulled:v1")
    assert caught.value.why == f"registry {private_registry.host} unreachable (connection refused)"


def test_tampered_blobs_are_refused_and_leave_nothing(
    module: bytes, registry: Registry, proxy: Callable[..., Proxy], tmp: Path
) -> None:
    built = build(module, f"{registry.host}/tamper/app:v1")
    push(built, progress=False)
    corrupting = proxy(corrupt=True)
    cache = Cache(tmp / "cache")
    for ref in (f"{corrupting.host}/tamper/app:v1", f"{corrupting.host}/tamper/app@{built.digest}"):
        with pytest.raises(DigestMismatch) as caught:
            pull(ref, cache=cache, progress=False)
        assert str(caught.value).startswith(f"{ref}: blob sha256:")
        assert str(caught.value).endswith("; refusing tampered or corrupt content")
        assert [p for p in cache.root.rglob("*") if p.is_file()] == []


def test_transient_failures_are_retried(
    module: bytes, registry: Registry, proxy: Callable[..., Proxy], tmp: Path
) -> None:
    push(build(module, f"{registry.host}/flaky/app:v1"), progress=False)
    flaky = proxy(statuses=[503, 502])
    assert pull(f"{flaky.host}/flaky/app:v1", cache=Cache(tmp), progress=False).path.read_bytes() == module


@pytest.mark.parametrize(
    ("status", "error", "why"),
    [
        (403, AccessDenied, "access denied (403 Forbidden)"),
        (503, RegistryError, "manifest: registry answered 503 Service Unavailable"),
        (500, RegistryError, "manifest: registry answered 500 Internal Server Error"),
    ],
)
def test_registry_failures_are_one_line(
    proxy: Callable[..., Proxy], tmp: Path, status: int, error: type[RegistryError], why: str
) -> None:
    failing = proxy(statuses=[status] * 3)
    with pytest.raises(error) as caught:
        pull(f"{failing.host}/any/app:v1", cache=Cache(tmp), progress=False)
    assert str(caught.value) == f"{failing.host}/any/app:v1: {why}"


def test_a_corrupt_cache_entry_is_fetched_again(module: bytes, registry: Registry, tmp: Path) -> None:
    ref = f"{registry.host}/heal/app:v1"
    built = build(module, ref, "artifact")
    push(built, progress=False)
    cache = Cache(tmp)
    first = pull(ref, cache=cache, progress=False)
    first.path.write_bytes(b"\0asm garbage")
    again = pull(f"{registry.host}/heal/app@{built.digest}", cache=cache, progress=False)
    assert again.path == first.path and again.path.read_bytes() == module


def test_htpasswd_registry_with_docker_config_login(
    module: bytes, auth_registry: Registry, docker_config: Path, tmp: Path
) -> None:
    ref = f"{auth_registry.host}/private/app:v1"
    built = build(module, ref)
    with pytest.raises(AuthenticationRequired) as caught:
        push(built, progress=False)
    assert str(caught.value) == f"{ref}: authentication required (401 Unauthorized)"
    write_docker_login(docker_config, auth_registry.host, USER, PASSWORD)
    push(built, progress=False)
    assert pull(ref, cache=Cache(tmp), progress=False).path.read_bytes() == module


def test_htpasswd_registry_rejects_wrong_and_missing_credentials(
    module: bytes, auth_registry: Registry, docker_config: Path, tmp: Path
) -> None:
    ref = f"{auth_registry.host}/private/app:v1"
    push(build(module, ref), credentials=Credentials(USER, PASSWORD), progress=False)
    with pytest.raises(AuthenticationRequired, match=r": authentication required \(401 Unauthorized\)$"):
        pull(ref, cache=Cache(tmp), progress=False)
    write_docker_login(docker_config, auth_registry.host, USER, "wrong")
    with pytest.raises(AuthenticationRequired, match=r": credentials rejected \(401 Unauthorized\)$"):
        pull(ref, cache=Cache(tmp), progress=False)


def test_htpasswd_registry_with_environment_token(
    module: bytes, auth_registry: Registry, docker_config: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"{auth_registry.host}/ci/app:v1"
    monkeypatch.setenv("WASMHOST_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("WASMHOST_REGISTRY_TOKEN", PASSWORD)
    push(build(module, ref, "wasm-to-oci"), progress=False)
    assert pull(ref, cache=Cache(tmp), progress=False).path.read_bytes() == module


def test_unreachable_registry_fails_cleanly(module: bytes) -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(Unreachable) as caught:
        push(build(module, f"{host}/nobody/app:v1"), progress=False)
    assert str(caught.value) == f"{host}/nobody/app:v1: registry {host} unreachable (connection refused)"


def test_https_to_a_plain_http_registry_explains_insecure(module: bytes, registry: Registry) -> None:
    with pytest.raises(Unreachable, match="use --insecure for a plain-HTTP registry"):
        push(build(module, f"{registry.host}/tls/app:v1"), insecure=False, progress=False)
