"""Every error `wasmhost.oci` raises: a thing (file, reference, blob) and why it failed.

Errors whose cause is on the far side of the network derive from `RegistryError`, so the CLI
can tell "fix your input" (exit 2) from "the registry or the network failed" (exit 1).
"""

from __future__ import annotations

from ..errors import WasmhostError


class OciError(WasmhostError):
    """Base class: `str()` is one line, `<what>: <why>`."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why


class InvalidReference(OciError):
    """An image reference does not follow the `[oci://]HOST/REPO[:TAG][@DIGEST]` grammar."""


class BuildError(OciError):
    """The input cannot become an image: missing file, not a module, bad option."""


class CredentialsError(OciError):
    """A Docker config file cannot be read or holds a malformed entry."""


class BundleError(OciError):
    """A runtime bundle cannot be written or read."""


class RegistryError(OciError):
    """The registry, or the network to it, failed or returned content we refuse."""


class Unreachable(RegistryError):
    """No answer from the registry: connection refused, DNS, TLS or timeout."""


class AuthenticationRequired(RegistryError):
    """401: no credentials, or the registry rejected them."""


class AccessDenied(RegistryError):
    """403: the credentials are valid but not allowed to do this."""


class NotFound(RegistryError):
    """404: no such repository, tag, manifest or blob."""


class UnsupportedMediaType(RegistryError):
    """The manifest or layer is of a kind we cannot run or the registry cannot store."""


class DigestMismatch(RegistryError):
    """Content does not hash to the digest it was addressed by: tampered or corrupt."""


class NotCached(RegistryError):
    """Offline, and the cache does not hold what the reference needs."""


class TooLarge(RegistryError):
    """A manifest, config or layer is larger (or expands further) than its limit allows."""
