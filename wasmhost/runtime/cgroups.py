"""Putting the container's process into the cgroup its bundle names (`linux.cgroupsPath`), with
the memory and CPU limits of `linux.resources`, so engines account for it and limits hold.

Only cgroupfs-style paths (`/kubepods/pod1/ctr`) are joined: a systemd-style path
(`slice:prefix:name`, from `--systemd-cgroup`) needs a transient systemd unit, which this
runtime does not create; such a container runs in the engine's cgroup and that is logged.
On a v1 or hybrid host every v1 hierarchy except cpuset (whose cpus and mems must be copied
down first) is joined, and the v2 one if mounted.
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from typing import Final

import attrs

from .errors import RuntimeFailure

log = logging.getLogger("wasmhost")

_SKIPPED: Final = frozenset({"cpuset"})
CFS_PERIOD: Final = 100_000


@attrs.frozen
class Resources:
    """The limits from `linux.resources` the runtime applies to the whole process."""

    memory: int | None = None
    #: CPU quota and period in microseconds (`cpu.quota`, `cpu.period`).
    cpu_quota: int | None = None
    cpu_period: int | None = None


def hierarchies(mounts: str) -> list[tuple[Path, bool]]:
    """Writable cgroup mount points in `/proc/self/mounts` text, each with whether it is v2."""
    found = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("cgroup", "cgroup2"):
            continue
        options = set(fields[3].split(","))
        if "ro" in options or options & _SKIPPED:
            continue
        found.append((Path(fields[1]), fields[2] == "cgroup2"))
    return found


def _limits(directory: Path, v2: bool, resources: Resources) -> dict[str, str]:
    """The files to write in `directory` (only those its controller has)."""
    wanted: dict[str, str] = {}
    if resources.memory is not None:
        wanted["memory.max" if v2 else "memory.limit_in_bytes"] = str(resources.memory)
    if resources.cpu_quota is not None:
        period = resources.cpu_period or CFS_PERIOD
        if v2:
            wanted["cpu.max"] = f"{resources.cpu_quota} {period}"
        else:
            wanted["cpu.cfs_period_us"] = str(period)
            wanted["cpu.cfs_quota_us"] = str(resources.cpu_quota)
    return {name: value for name, value in wanted.items() if (directory / name).exists()}


def join(path: str, pid: int, resources: Resources) -> list[str]:
    """Move `pid` into `path` in every hierarchy and apply `resources`; returns the directories
    made, for `remove`. RuntimeFailure names the file the kernel refused."""
    if ":" in path:
        log.warning("cgroupsPath %s: systemd cgroups are not managed; the container stays in its parent's", path)
        return []
    made: list[str] = []
    try:
        for mount, v2 in hierarchies(Path("/proc/self/mounts").read_text()):
            directory = mount
            for part in Path(path.lstrip("/")).parts:
                directory /= part
                if not directory.exists():
                    directory.mkdir()
                    made.append(str(directory))
            for name, value in _limits(directory, v2, resources).items():
                (directory / name).write_text(value)
            (directory / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        remove(made)
        raise RuntimeFailure(f"cgroup {exc.filename or path}: {exc.strerror}") from None
    return made


def remove(directories: list[str], patience: float = 2.0) -> None:
    """Remove the cgroups `join` made, deepest first. A process killed a moment ago may still be
    leaving its cgroup (EBUSY): retry for up to `patience` seconds, then leave it."""
    deadline = time.monotonic() + patience
    for directory in sorted(directories, key=len, reverse=True):
        while True:
            try:
                Path(directory).rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("cgroup %s: not removed: %s", directory, exc.strerror)
                    break
                time.sleep(0.02)
