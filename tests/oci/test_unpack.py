"""Locating the module in pulled content, without a registry: table-driven over the formats."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmhost.oci import RegistryError, UnsupportedMediaType
from wasmhost.oci.builder import build, tar_layer
from wasmhost.oci.content import Descriptor, encode_json
from wasmhost.oci.errors import TooLarge
from wasmhost.oci.limits import Limit, module_size
from wasmhost.oci.unpack import Document, choose_manifest, module_from_tar, parse_document, plan

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM = b"\0asm\1\0\0\0"


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        ({"mediaType": OCI_INDEX, "manifests": []}, "", OCI_INDEX),
        ({"layers": []}, DOCKER_MANIFEST, DOCKER_MANIFEST),
        ({"layers": []}, "", OCI_MANIFEST),
        ({"manifests": []}, "", OCI_INDEX),
    ],
)
def test_document_kinds(body: dict[str, object], content_type: str, kind: str) -> None:
    assert parse_document(encode_json(body), content_type, "ref").media_type == kind


@pytest.mark.parametrize(
    ("data", "error", "why"),
    [
        (b"not json", RegistryError, "manifest is invalid JSON"),
        (b"[]", RegistryError, "manifest is not a JSON object"),
        (
            encode_json({"mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"}),
            UnsupportedMediaType,
            "unsupported manifest media type application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
    ],
)
def test_bad_documents(data: bytes, error: type[Exception], why: str) -> None:
    with pytest.raises(error, match="^ref: " + why.replace("+", r"\+")):
        parse_document(data, "", "ref")


def _entry(os: str, arch: str, byte: str) -> dict[str, object]:
    digest = "sha256:" + byte * 64
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1, "platform": {"os": os, "architecture": arch}}


def test_index_prefers_wasi_then_a_lone_entry() -> None:
    index = Document(OCI_INDEX, {"manifests": [_entry("linux", "amd64", "a"), _entry("wasip1", "wasm", "b")]})
    assert choose_manifest(index, "ref").digest == "sha256:" + "b" * 64
    lone = Document(OCI_INDEX, {"manifests": [_entry("linux", "arm64", "c")]})
    assert choose_manifest(lone, "ref").digest == "sha256:" + "c" * 64
    linux = Document(OCI_INDEX, {"manifests": [_entry("linux", "amd64", "a"), _entry("linux", "arm64", "c")]})
    with pytest.raises(UnsupportedMediaType, match=r"no wasi/wasm manifest \(platforms: linux/amd64, linux/arm64\)"):
        choose_manifest(linux, "ref")


def test_plan_for_each_built_format() -> None:
    for format, path, args in (
        ("image", "/app.wasm", ("/app.wasm",)),
        ("artifact", None, ()),
        ("wasm-to-oci", None, ()),
    ):
        built = build(WASM, "ghcr.io/me/app:v1", format)  # type: ignore[arg-type]
        layout = plan(Document(OCI_MANIFEST, json.loads(built.manifest)), built.config, "ref")
        assert (layout.path, layout.args) == (path, args)
        assert [layer.size for layer in layout.layers] == [len(built.layers[0])]


@pytest.mark.parametrize(
    ("layers", "why"),
    [
        ([], "manifest has no layers"),
        (["application/wasm", "application/wasm"], "2 Wasm layers; expected exactly one"),
        (["application/vnd.oci.image.layer.v1.tar+zstd"], "unsupported layer media type"),
    ],
)
def test_plan_refusals(layers: list[str], why: str) -> None:
    manifest = {"layers": [Descriptor(t, "sha256:" + "0" * 64, 1).to_json() for t in layers]}
    with pytest.raises(UnsupportedMediaType, match=why):
        plan(Document(OCI_MANIFEST, manifest), b"{}", "ref")


def test_malformed_descriptor_is_named() -> None:
    manifest = {"layers": [{"mediaType": "application/wasm", "digest": "sha256:abc", "size": 1}]}
    with pytest.raises(RegistryError, match="malformed manifest: unsupported digest 'sha256:abc'"):
        plan(Document(OCI_MANIFEST, manifest), b"{}", "ref")


def _layer(media_type: str, files: dict[str, bytes]) -> tuple[Descriptor, bytes]:
    blob = tar_layer(files)
    blob = gzip.compress(blob) if media_type == TAR_GZIP else blob
    return Descriptor.of(media_type, blob), blob


def _module(layer: Descriptor, blob: bytes, path: str | None, limit: Limit | None = None) -> bytes | None:
    """`module_from_tar` keeping the module in memory, with every piece it was handed."""
    pieces: list[bytes] = []

    def keep(chunks: Iterator[bytes]) -> bytes:
        pieces.extend(chunks)
        return b"".join(pieces)

    return module_from_tar(layer, io.BytesIO(blob), path, limit or module_size(), "ref", keep)


@pytest.mark.parametrize("media_type", [TAR, TAR_GZIP])
def test_module_from_tar(media_type: str) -> None:
    layer, blob = _layer(media_type, {"/srv/app.wasm": WASM, "/etc/motd": b"hi"})
    assert _module(layer, blob, "/srv/app.wasm") == WASM
    assert _module(layer, blob, None) == WASM
    assert _module(layer, blob, "/other.wasm") is None


def test_module_from_tar_refusals() -> None:
    layer, blob = _layer(TAR, {"/a.wasm": WASM, "/b.wasm": WASM})
    with pytest.raises(UnsupportedMediaType, match=r"several modules \(/a.wasm, /b.wasm\)"):
        _module(layer, blob, None)
    directory, blob = _layer(TAR, {"/srv/x": b""})
    with pytest.raises(UnsupportedMediaType, match="/srv in the image is not a regular file"):
        _module(directory, blob, "/srv")
    gz = Descriptor.of(TAR_GZIP, b"plain")
    with pytest.raises(RegistryError, match="is not valid gzip"):
        _module(gz, b"plain", None)
    truncated, blob = _layer(TAR_GZIP, {"/app.wasm": WASM * 1000})
    with pytest.raises(RegistryError, match="is not valid gzip"):
        _module(truncated, blob[: len(blob) // 2], None)
    with pytest.raises(RegistryError, match="is not a valid tar"):
        _module(Descriptor.of(TAR, b"x" * 600), b"x" * 600, None)


@pytest.mark.parametrize("media_type", [TAR, TAR_GZIP])
def test_a_layer_is_read_only_up_to_the_limit(media_type: str) -> None:
    """The cap counts the tar stream (decompressed bytes), and stops reading where it passes."""
    layer, blob = _layer(media_type, {"/app.wasm": WASM + bytes(64 * 1024)})
    assert _module(layer, blob, None, Limit(80 * 1024, "module size")) == WASM + bytes(64 * 1024)
    with pytest.raises(TooLarge) as caught:
        _module(layer, blob, None, Limit(32 * 1024, "module size"))
    assert caught.value.why == f"layer {layer.digest} expands past the 32768-byte module size limit; refusing it"


def test_concatenated_gzip_members_are_one_layer() -> None:
    whole = tar_layer({"/app.wasm": WASM})
    blob = gzip.compress(whole[:700]) + gzip.compress(whole[700:])
    assert _module(Descriptor.of(TAR_GZIP, blob), blob, None) == WASM


_paths = st.lists(
    st.from_regex(r"[a-z0-9_.-]{1,8}", fullmatch=True).filter(lambda c: c not in (".", "..")), min_size=1, max_size=3
)


@given(st.dictionaries(_paths.map(lambda parts: "/" + "/".join(parts)), st.binary(max_size=64), min_size=1, max_size=4))
def test_tar_layers_round_trip(files: dict[str, bytes]) -> None:
    """Every file `tar_layer` packs is found again at its path (unless a directory shadows it)."""
    layer, blob = _layer(TAR_GZIP, files)
    for path, data in files.items():
        if any(other.startswith(path + "/") for other in files):
            continue
        assert _module(layer, blob, path) == data
