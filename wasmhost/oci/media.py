"""Media types and annotation keys of OCI images and the Wasm artifacts seen in the wild."""

from __future__ import annotations

from typing import Final, Literal, get_args

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
#: CNCF TAG-Runtime "Wasm OCI Artifact layout".
WASM_CONFIG_V0: Final = "application/vnd.wasm.config.v0+json"
#: wasm-to-oci, as pulled by Krustlet.
WASM_CONFIG_V1: Final = "application/vnd.wasm.config.v1+json"

LAYER_TAR: Final = "application/vnd.oci.image.layer.v1.tar"
LAYER_TAR_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER_TAR_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: Tar layers we can read, mapped to whether they are gzip-compressed.
TAR_LAYERS: Final = {LAYER_TAR: False, LAYER_TAR_GZIP: True, DOCKER_LAYER_TAR_GZIP: True}

WASM_LAYER: Final = "application/wasm"
WASM_CONTENT_LAYER: Final = "application/vnd.wasm.content.layer.v1+wasm"
MODULE_WASM_LAYER: Final = "application/vnd.module.wasm.content.layer.v1+wasm"
#: Layers whose blob is the module itself.
WASM_LAYERS: Final = frozenset({WASM_LAYER, WASM_CONTENT_LAYER, MODULE_WASM_LAYER})

#: Tells crun, youki and CRI runtimes to run the container through their Wasm handler.
VARIANT_ANNOTATION: Final = "module.wasm.image/variant"
#: crun's own switch for the same thing.
HANDLER_ANNOTATION: Final = "run.oci.handler"
WASM_ANNOTATIONS: Final = {VARIANT_ANNOTATION: "compat", HANDLER_ANNOTATION: "wasm"}

REF_NAME_ANNOTATION: Final = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION: Final = "io.containerd.image.name"
TITLE_ANNOTATION: Final = "org.opencontainers.image.title"

#: Version field of a core module; components carry another one after the same magic.
CORE_MODULE_VERSION: Final = b"\x01\0\0\0"

#: How a module is packaged: an image (crun, youki, runwasi, Docker), the CNCF Wasm artifact, or
#: the wasm-to-oci layout Krustlet pulls.
Format = Literal["image", "artifact", "wasm-to-oci"]
FORMATS: Final[tuple[Format, ...]] = get_args(Format)
