"""What the runtime reads from a bundle's `config.json` beyond what a WASI host needs (that part is
`wasmhost.oci.read_bundle`): whether the bundle is Wasm, its annotations, its network namespace."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Final

import attrs

from ..oci import media
from ..oci.content import decode_json_object
from ..oci.errors import BundleError
from .cgroups import Resources

OCI_VERSION: Final = "1.0.2"


@attrs.frozen
class NetworkNamespace:
    """The bundle's `network` namespace: join `path`, or a new one when `path` is None."""

    path: str | None


@attrs.frozen
class Spec:
    """The runtime's view of a bundle's configuration."""

    oci_version: str
    annotations: dict[str, str]
    #: `process.args[0]`, the entrypoint.
    entrypoint: str
    terminal: bool
    #: None: the host's network namespace (the config names none).
    network: NetworkNamespace | None
    #: `linux.cgroupsPath`, and the limits `linux.resources` puts on it (the memory limit
    #: also caps the guest's linear memory).
    cgroups_path: str | None = None
    resources: Resources = attrs.field(factory=Resources)

    @property
    def is_wasm(self) -> bool:
        """Wasm as crun decides it: the compat annotations, or an entrypoint ending in `.wasm`."""
        variant = self.annotations.get(media.VARIANT_ANNOTATION) == "compat"
        handler = self.annotations.get(media.HANDLER_ANNOTATION) == "wasm"
        return variant or handler or posixpath.basename(self.entrypoint).endswith(".wasm")


def read_spec(bundle: Path) -> Spec:
    """Read `bundle/config.json`; BundleError names the file and the problem."""
    where = str(bundle / "config.json")
    try:
        config = decode_json_object((bundle / "config.json").read_bytes())
    except OSError as exc:
        raise BundleError(where, exc.strerror or "cannot read") from None
    except ValueError as exc:
        raise BundleError(where, str(exc)) from None
    return parse_spec(config, where)


def parse_spec(config: dict[str, Any], where: str) -> Spec:
    """The runtime's view of an already decoded config (no I/O)."""
    process = config.get("process")
    if not isinstance(process, dict):
        raise BundleError(where, "process is missing or not an object")
    args = process.get("args")
    if not isinstance(args, list) or not args or not isinstance(args[0], str):
        raise BundleError(where, "process.args must name the program to run")
    annotations = config.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise BundleError(where, "annotations must map strings to strings")
    linux = _object(config, "linux", where)
    network = None
    for namespace in linux.get("namespaces") or []:
        if isinstance(namespace, dict) and namespace.get("type") == "network":
            path = namespace.get("path") or None
            if path is not None and not isinstance(path, str):
                raise BundleError(where, "linux.namespaces: a network namespace path must be a string")
            network = NetworkNamespace(path)
    resources = _object(linux, "resources", where)
    memory, cpu = _object(resources, "memory", where), _object(resources, "cpu", where)
    cgroups_path = linux.get("cgroupsPath")
    return Spec(
        oci_version=str(config.get("ociVersion", OCI_VERSION)),
        annotations=dict(annotations),
        entrypoint=args[0],
        terminal=bool(process.get("terminal", False)),
        network=network,
        cgroups_path=cgroups_path if isinstance(cgroups_path, str) and cgroups_path else None,
        resources=Resources(*(_positive(v) for v in (memory.get("limit"), cpu.get("quota"), cpu.get("period")))),
    )


def _object(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`parent[key]`, an object; absent or null is an empty one."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BundleError(where, f"{key} must be an object")
    return value


def _positive(value: object) -> int | None:
    """A limit that is set: a positive integer (-1 and 0 mean unlimited, or unset, in OCI)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
