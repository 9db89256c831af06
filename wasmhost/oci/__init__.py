"""Wasm modules as OCI images and artifacts: build, push, pull, cache, runtime bundles.

Typical use::

    built = build(Path("app.wasm"), "ghcr.io/me/app:v1")  # or format="artifact" / "wasm-to-oci"
    write_layout(built, Path("layout"))  # for skopeo, umoci, ctr import
    push(built)  # credentials from the Docker config
    path = resolve_module("oci://ghcr.io/me/app:v1")  # cached; works offline
    write_bundle(path, Path("bundle"))  # for crun / youki
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attribute_loader, names

if TYPE_CHECKING:
    from .builder import MODULE_PATH, Built, build
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
        TooLarge,
        Unreachable,
        UnsupportedMediaType,
    )
    from .layout import write_layout
    from .media import FORMATS, Format
    from .pull import PulledModule, pull, resolve_module
    from .push import push
    from .reference import Reference
    from .reference import parse as parse_reference

# Loaded on first use: pull and push import oras, requests and urllib3, which reading a
# bundle or running a local module never needs.
__getattr__ = attribute_loader(
    __name__,
    {
        **names("builder", "MODULE_PATH", "Built", "build"),
        **names("media", "FORMATS", "Format"),
        **names("bundle", "Bundle", "Mount", "read_bundle", "write_bundle"),
        **names("cache", "Cache"),
        **names("credentials", "Credentials"),
        **names(
            "errors",
            "AccessDenied",
            "AuthenticationRequired",
            "BuildError",
            "BundleError",
            "CredentialsError",
            "DigestMismatch",
            "InvalidReference",
            "NotCached",
            "NotFound",
            "OciError",
            "RegistryError",
            "TooLarge",
            "Unreachable",
            "UnsupportedMediaType",
        ),
        **names("layout", "write_layout"),
        **names("pull", "PulledModule", "pull", "resolve_module"),
        **names("push", "push"),
        **names("reference", "Reference"),
        "parse_reference": ("reference", "parse"),
    },
)

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
    "TooLarge",
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
