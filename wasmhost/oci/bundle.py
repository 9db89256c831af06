"""OCI runtime bundles (`config.json` + `rootfs/`) for Wasm, as crun and youki run them.

`write_bundle` produces the config the seed article hand-edits from `crun spec`: read-only
root, `process.args = ["/app.wasm"]`, the compat annotation, no network namespace of its own.
`read_bundle` reads any such bundle back into what a WASI host needs: the module file, argv,
environment, working directory and the directories to preopen.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from ..module import header_problem
from . import media
from .builder import MODULE_PATH, check_module_path, read_module
from .content import decode_json_object, string_list
from .errors import BundleError

log = logging.getLogger("wasmhost")

DEFAULT_ENV: Final = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "xterm",
}
CAPABILITIES: Final = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
#: Kernel file systems every Linux container gets; meaningless to a WASI guest.
SYSTEM_MOUNTS: Final = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
]


@attrs.frozen
class Mount:
    """A host directory the guest sees at `guest` (a WASI preopen)."""

    guest: str
    host: Path
    read_only: bool = False


@attrs.frozen
class Bundle:
    """What a WASI host needs from a runtime bundle."""

    #: The module file on the host, inside the bundle's root file system.
    module: Path
    #: `process.args`: argv, argv[0] being the module's path inside the root.
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    #: Directories to preopen, the root file system first (at "/").
    mounts: tuple[Mount, ...]


def write_bundle(
    module: bytes | Path,
    directory: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    mounts: Sequence[Mount] = (),
    module_path: str = MODULE_PATH,
) -> Path:
    """Write `config.json` and `rootfs/` into `directory`; returns the config path.

    `args` follow the module in `process.args`; `mounts` become bind mounts.
    """
    check_module_path(module_path, BundleError)
    data = read_module(module, BundleError)
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [module_path, *args],
            "env": [f"{key}={value}" for key, value in {**DEFAULT_ENV, **(env or {})}.items()],
            "cwd": "/",
            "capabilities": {kind: CAPABILITIES for kind in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "wasmhost",
        "mounts": SYSTEM_MOUNTS
        + [
            {
                "destination": mount.guest,
                "type": "bind",
                "source": str(mount.host.absolute()),
                "options": ["rbind", "ro" if mount.read_only else "rw"],
            }
            for mount in mounts
        ],
        "annotations": media.WASM_ANNOTATIONS,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # No network namespace: the guest shares the host's, as in the seed's examples.
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    target = directory / "rootfs" / module_path.lstrip("/")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755)
        config_path = directory / "config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    except OSError as exc:
        raise BundleError(str(directory), exc.strerror or "cannot write the bundle") from None
    return config_path


def read_bundle(directory: Path) -> Bundle:
    """Read a bundle written by `write_bundle`, `crun spec` + edits, or umoci.

    The root and every bind mount expose the host directories they name, as OCI means them
    to; each is logged at info level (host path, guest path, read-only or not).
    """
    config_path = directory / "config.json"
    where = str(config_path)
    try:
        config = decode_json_object(config_path.read_bytes())
    except OSError as exc:
        raise BundleError(where, exc.strerror or "cannot read") from None
    except ValueError as exc:
        raise BundleError(where, str(exc)) from None
    process, root = _object(config, "process", where), _object(config, "root", where)
    args = _strings(process, "args", where)
    if not args:
        raise BundleError(where, "process.args is empty; it must name the module")
    env = tuple((k, v) for k, sep, v in (e.partition("=") for e in _strings(process, "env", where)) if sep)
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise BundleError(where, "process.cwd must be an absolute path")
    rootfs = directory / str(root.get("path", "rootfs"))
    module = _inside(rootfs, posixpath.join(cwd, args[0]), where)
    try:
        with module.open("rb") as file:
            problem = header_problem(file.read(8))
    except OSError as exc:
        raise BundleError(where, f"module {args[0]}: {exc.strerror or 'cannot read'}") from None
    if problem:
        raise BundleError(where, f"process.args[0] {args[0]}: {problem}")
    mounts = [Mount("/", rootfs, bool(root.get("readonly", False)))]
    for entry in config.get("mounts") or []:
        mount = _bind_mount(entry, directory, where)
        if mount is not None:
            mounts.append(mount)
    for mount in mounts:  # whatever the bundle names is exposed, as in OCI: say what that is
        access = "read-only" if mount.read_only else "read-write"
        log.info("%s: exposes host %s at %s (%s)", where, mount.host.absolute(), mount.guest, access)
    return Bundle(module, tuple(args), env, cwd, tuple(mounts))


def _object(config: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = config.get(key)
    if not isinstance(value, dict):
        raise BundleError(where, f"{key} is missing or not an object")
    return value


def _strings(process: dict[str, Any], key: str, where: str) -> list[str]:
    return string_list(process, key, BundleError, where, f"process.{key}")


def _inside(rootfs: Path, guest_path: str, where: str) -> Path:
    """The host file for `guest_path`, refusing paths (or symlinks) that leave the root."""
    host = Path(os.path.realpath(rootfs / guest_path.lstrip("/")))
    if not host.is_relative_to(os.path.realpath(rootfs)):
        raise BundleError(where, f"{guest_path} resolves outside the root file system")
    if not host.is_file():
        raise BundleError(where, f"module {guest_path} not found in {rootfs}")
    return host


def _bind_mount(entry: object, directory: Path, where: str) -> Mount | None:
    """A bind mount as a preopen; kernel file systems (proc, tmpfs, ...) are skipped, and so
    are bound files (umoci binds /etc/resolv.conf): WASI preopens only directories."""
    if not isinstance(entry, dict):
        raise BundleError(where, "mounts entries must be objects")
    options = entry.get("options") or []
    if entry.get("type") != "bind" and not {"bind", "rbind"} & set(options):
        return None
    guest, source = entry.get("destination"), entry.get("source")
    if not isinstance(guest, str) or not isinstance(source, str):
        raise BundleError(where, "a bind mount needs a destination and a source")
    host = directory / source
    if host.exists() and not host.is_dir():
        log.warning("%s: mount %s -> %s skipped: WASI can only preopen directories", where, source, guest)
        return None
    return Mount(guest, host, "ro" in options)
