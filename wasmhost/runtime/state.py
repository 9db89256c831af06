"""A container's state directory, `ROOT/ID/`, which outlives the runtime process (as runc's does).

It holds `wasmhost.json` (the record below) and, until `start`, the FIFO `exec.fifo` on which the
waiting init process blocks. Status is derived, never stored: the init process alive with the FIFO
present is `created`, alive without it `running`, gone (or a zombie) `stopped`. A directory without
`wasmhost.json` belongs to the runtime the runtime delegated to (runc keeps `state.json` there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Final

import attrs

from .errors import RuntimeFailure

RECORD: Final = "wasmhost.json"
FIFO: Final = "exec.fifo"
#: runc's container id rule; it also keeps ids from naming paths outside the root.
_ID: Final = re.compile(r"[\w+\-.]+")


def check_id(container_id: str) -> None:
    if not _ID.fullmatch(container_id) or container_id in (".", ".."):
        raise RuntimeFailure(f"invalid container id format: {container_id}")


@attrs.frozen
class Record:
    """What `create` knows about a container, as stored in `wasmhost.json`."""

    id: str
    bundle: str
    pid: int
    #: The init process's start time (clock ticks since boot): tells it from a later process given the same pid.
    start_time: int
    created: str
    oci_version: str
    annotations: dict[str, str] = attrs.field(factory=dict)
    #: The cgroup directories `create` made, removed by `delete`.
    cgroups: list[str] = attrs.field(factory=list)


def process_start_time(pid: int) -> int | None:
    """Start time of a live process, None when `pid` is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


@attrs.frozen
class Container:
    """A state directory and its record."""

    directory: Path
    record: Record

    @property
    def fifo(self) -> Path:
        return self.directory / FIFO

    def alive(self) -> bool:
        return process_start_time(self.record.pid) == self.record.start_time

    def status(self) -> str:
        if not self.alive():
            return "stopped"
        return "created" if self.fifo.exists() else "running"

    def state(self) -> dict[str, Any]:
        """The OCI runtime spec's state, plus runc's `rootfs`-less extras engines read (`created`)."""
        status = self.status()
        return {
            "ociVersion": self.record.oci_version,
            "id": self.record.id,
            "status": status,
            "pid": 0 if status == "stopped" else self.record.pid,
            "bundle": self.record.bundle,
            "created": self.record.created,
            "annotations": self.record.annotations,
        }

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def directory(root: Path, container_id: str) -> Path:
    check_id(container_id)
    return root / container_id


def is_ours(root: Path, name: str) -> bool:
    """Whether `name` is the id of a container this runtime runs (not runc's, not an argument)."""
    return bool(_ID.fullmatch(name)) and name not in (".", "..") and (root / name / RECORD).exists()


def load(root: Path, container_id: str) -> Container:
    """The container `container_id`, or RuntimeFailure("container does not exist")."""
    where = directory(root, container_id)
    try:
        data = json.loads((where / RECORD).read_text())
        return Container(where, Record(**data))
    except FileNotFoundError:
        raise RuntimeFailure("container does not exist") from None
    except (OSError, ValueError, TypeError) as exc:
        raise RuntimeFailure(f"{where / RECORD}: unreadable state: {exc}") from None


def save(container: Container) -> None:
    """Write the record atomically: a reader sees the old one or the new one."""
    temporary = container.directory / f".{RECORD}.tmp"
    temporary.write_text(json.dumps(attrs.asdict(container.record)))
    os.replace(temporary, container.directory / RECORD)
