"""Wasm modules as OCI images and artifacts: build, push, pull, cache, runtime bundles.

Typical use::

    built = build(Path("app.wasm"), "ghcr.io/me/app:v1")  # or format="artifact" / "wasm-to-oci"
    write_layout(built, Path("layout"))  # for skopeo, umoci, ctr import
    push(built)  # credentials from the Docker config
    path = resolve_module("oci://ghcr.io/me/app:v1")  # cached; works offline
    write_bundle(path, Path("bundle"))  # for crun / youki
"""

from .builder import FORMATS, MODULE_PATH, Built, Format, build
from .bundle import Bundle, Mount, read_bundle, write_bundle
from .cache import Cache
from .credentials import Credentials
from .errors import (
    AccessDenied,
    AuthenticationRequired,
    BuildError,
    BundleError,
    CredentialsError,
    DigestMismatch,
    InvalidReference,
    NotCached,
    NotFound,
    OciError,
    RegistryError,
    Unreachable,
    UnsupportedMediaType,
)
from .layout import write_layout
from .pull import PulledModule, pull, resolve_module
from .push import push
from .reference import Reference
from .reference import parse as parse_reference

__all__ = [
    "FORMATS",
    "MODULE_PATH",
    "AccessDenied",
    "AuthenticationRequired",
    "BuildError",
    "Built",
    "Bundle",
    "BundleError",
    "Cache",
    "Credentials",
    "CredentialsError",
    "DigestMismatch",
    "Format",
    "InvalidReference",
    "Mount",
    "NotCached",
    "NotFound",
    "OciError",
    "PulledModule",
    "Reference",
    "RegistryError",
    "Unreachable",
    "UnsupportedMediaType",
    "build",
    "parse_reference",
    "pull",
    "push",
    "read_bundle",
    "resolve_module",
    "write_bundle",
    "write_layout",
]
