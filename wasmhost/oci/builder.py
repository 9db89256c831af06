"""Build an OCI image or artifact around a Wasm module: bytes in, manifest and blobs out.

Nothing here touches the disk or the network, and nothing depends on the clock, the user or
the order of a directory listing, so the same module always yields the same digests.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs

from ..module import header_problem
from . import media
from .content import Descriptor, digest_of, encode_json
from .errors import BuildError, OciError
from .media import FORMATS, Format
from .reference import Reference, parse

#: Where the module lives inside an image, as in `COPY app.wasm /` + `CMD ["/app.wasm"]`.
MODULE_PATH: Final = "/app.wasm"
#: Every timestamp we write: builds must not depend on the clock.
EPOCH: Final = "1970-01-01T00:00:00Z"
DEFAULT_PLATFORM: Final = "wasi/wasm"


@attrs.frozen
class Built:
    """A finished image or artifact: the manifest and every blob it references."""

    reference: Reference
    format: Format
    manifest: bytes
    config: bytes
    layers: tuple[bytes, ...]
    #: (os, architecture) of an image; artifacts have none.
    platform: tuple[str, str] | None = None

    @property
    def digest(self) -> str:
        """The manifest digest: what `@sha256:` pins and what a registry reports."""
        return digest_of(self.manifest)

    @property
    def descriptor(self) -> Descriptor:
        """The manifest's descriptor, with a platform for images (for an index or a layout)."""
        return Descriptor(media.OCI_MANIFEST, self.digest, len(self.manifest), platform=self.platform)

    @property
    def blobs(self) -> dict[str, bytes]:
        """Config and layers by digest."""
        return {digest_of(blob): blob for blob in (self.config, *self.layers)}

    @property
    def size(self) -> int:
        """Bytes a registry stores for this build: manifest, config and (compressed) layers."""
        return len(self.manifest) + len(self.config) + sum(map(len, self.layers))


def build(
    module: bytes | Path,
    ref: str | Reference,
    format: Format = "image",
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    module_path: str = MODULE_PATH,
) -> Built:
    """Package `module` for `ref` in `format`.

    `args`, `env` and `platform` (`OS/ARCH`, default `wasi/wasm`) go into an image's config;
    `linux/amd64` suits tools that only unpack Linux images (umoci, older Docker engines).
    """
    name = str(module) if isinstance(module, Path) else "module"
    data = read_module(module, BuildError)
    check_module_path(module_path, BuildError)
    if format not in FORMATS:
        raise BuildError(name, f"unknown format {format!r} (want one of {', '.join(FORMATS)})")
    if format != "image" and (args or env or platform):
        raise BuildError(name, f"the {format} format has no args, env or platform; use image")
    os_arch = tuple((platform or DEFAULT_PLATFORM).split("/"))
    if len(os_arch) != 2 or not all(os_arch):
        raise BuildError(str(platform), "platform must be OS/ARCH, like wasi/wasm or linux/amd64")
    reference = ref if isinstance(ref, Reference) else parse(ref)
    if reference.digest:
        raise BuildError(str(reference), "a build takes a tag; the digest comes from the content")
    annotations: Mapping[str, str] = {}
    layer_annotations: Mapping[str, str] = {}
    if format == "image":
        tar = tar_layer({module_path: data})
        layer = gzip.compress(tar, compresslevel=9, mtime=0)
        config = _image_config(module_path, args, env or {}, os_arch, digest_of(tar))
        config_type, layer_type = media.OCI_CONFIG, media.LAYER_TAR_GZIP
        annotations = media.WASM_ANNOTATIONS
    elif format == "artifact":
        layer = data
        # The CNCF Wasm artifact's os says what the layer is: wasip1 a core module, wasip2 a component.
        wasi = "wasip1" if data[4:8] == media.CORE_MODULE_VERSION else "wasip2"
        config = encode_json({"architecture": "wasm", "os": wasi, "created": EPOCH, "layerDigests": [digest_of(layer)]})
        config_type, layer_type = media.WASM_CONFIG_V0, media.WASM_LAYER
    else:
        layer, config = data, b"{}"
        config_type, layer_type = media.WASM_CONFIG_V1, media.WASM_CONTENT_LAYER
        layer_annotations = {media.TITLE_ANNOTATION: posixpath.basename(module_path)}
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": Descriptor.of(config_type, config).to_json(),
        "layers": [Descriptor.of(layer_type, layer, layer_annotations).to_json()],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    image_platform = (os_arch[0], os_arch[1]) if format == "image" else None
    return Built(reference, format, encode_json(manifest), config, (layer,), image_platform)


def read_module(module: bytes | Path, error: type[OciError]) -> bytes:
    """The module's bytes, refused with `error` (naming the file) unless they are WebAssembly."""
    name = str(module) if isinstance(module, Path) else "module"
    try:
        data = module if isinstance(module, bytes) else module.read_bytes()
    except OSError as exc:
        raise error(name, exc.strerror or "cannot read") from None
    problem = header_problem(data[:8])
    if problem:
        raise error(name, problem)
    return data


def check_module_path(path: str, error: type[OciError]) -> None:
    """Refuse (with `error`) a module path that is not an absolute, normalized file path."""
    if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
        raise error(path, "module path must be absolute, normalized and name a file")


def _image_config(
    module_path: str,
    args: Sequence[str],
    env: Mapping[str, str],
    platform: tuple[str, ...],
    diff_id: str,
) -> bytes:
    """The config of `FROM scratch` + `COPY app.wasm /` + `ENTRYPOINT ["/app.wasm"]`.

    The Wasm annotations are also labels, which image-to-bundle converters (umoci, the OCI
    conversion spec) turn into the runtime annotations crun and youki look at.
    """
    runtime: dict[str, object] = {
        "Entrypoint": [module_path],
        "WorkingDir": "/",
        "Labels": media.WASM_ANNOTATIONS,
    }
    if args:
        runtime["Cmd"] = list(args)
    if env:
        runtime["Env"] = [f"{key}={value}" for key, value in sorted(env.items())]
    return encode_json(
        {
            "os": platform[0],
            "architecture": platform[1],
            "created": EPOCH,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    )


def tar_layer(files: Mapping[str, bytes]) -> bytes:
    """A reproducible tar of `files` (absolute paths), with parent directories, owned by root."""
    entries: dict[str, bytes | None] = {}
    for path, data in files.items():
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]) + "/", None)
        entries["/".join(parts)] = data
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            content = entries[name]
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mode, info.mtime, info.uid, info.gid = 0o755, 0, 0, 0
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()
