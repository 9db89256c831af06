"""The OCI runtime operations on Wasm containers: create, start, kill, delete.

Each runs in a short-lived runtime process; what lasts is the state directory and the init
process (`init.py`) that `create` leaves waiting for `start`.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import attrs

from . import cgroups
from .errors import RuntimeFailure
from .init import READY
from .logfile import LogFile
from .spec import Spec
from .state import FIFO, Container, Record, process_start_time, save

#: How long `create` waits for the init process to compile and instantiate the module.
PREPARE_TIMEOUT = 120.0
#: How long `start` waits for the init process to take the FIFO, and `delete --force` for it to die.
SETTLE_TIMEOUT = 10.0


@attrs.frozen
class CreateOptions:
    bundle: Path
    pid_file: Path | None = None
    console_socket: Path | None = None


def create(root: Path, container_id: str, spec: Spec, options: CreateOptions, log: LogFile) -> None:
    """Start the init process, wait until it is ready, record it; on failure leave nothing behind."""
    if spec.terminal and options.console_socket is None:
        raise RuntimeFailure("cannot allocate tty if runc will detach without setting console socket")
    where = root / container_id
    try:
        root.mkdir(parents=True, exist_ok=True)
        where.mkdir(mode=0o711)
    except FileExistsError:
        raise RuntimeFailure(f"container with id exists: {container_id}") from None
    except OSError as exc:
        raise RuntimeFailure(f"{where}: {exc.strerror}") from None
    made: list[str] = []
    try:
        os.mkfifo(where / FIFO, 0o622)
        pid, made = _spawn_init(where, options, spec, log)
        start_time = process_start_time(pid)
        if start_time is None:
            raise RuntimeFailure("container init exited before it was ready")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        bundle = str(options.bundle.absolute())
        record = Record(container_id, bundle, pid, start_time, created, spec.oci_version, spec.annotations, made)
        save(Container(where, record))
        if options.pid_file is not None:
            _write_pid_file(options.pid_file, pid)
    except BaseException:
        _kill_quietly(where)
        cgroups.remove(made)
        shutil.rmtree(where, ignore_errors=True)
        raise


def _spawn_init(where: Path, options: CreateOptions, spec: Spec, log: LogFile) -> tuple[int, list[str]]:
    """Start `init.py` with create's stdio (or a new pty) in the bundle's cgroup; once it
    reports ready, return its pid and the cgroup directories made for it."""
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "wasmhost.runtime.init", "--sync-fd", str(write_end)]
    command += ["--state", str(where), "--bundle", str(options.bundle.absolute())]
    if log.path is not None:
        command += ["--log", str(log.path.absolute()), "--log-format", log.format]
    stdio = _console(options.console_socket) if spec.terminal and options.console_socket else None
    try:
        process = subprocess.Popen(
            command,
            stdin=stdio,
            stdout=stdio,
            stderr=stdio,
            pass_fds=(write_end,),
            start_new_session=stdio is not None,
        )
    finally:
        os.close(write_end)
        if stdio is not None:
            os.close(stdio)
    (where / "init.pid").write_text(str(process.pid))  # lets a failed create kill it
    try:
        made = cgroups.join(spec.cgroups_path, process.pid, spec.resources) if spec.cgroups_path else []
    except RuntimeFailure:
        os.close(read_end)
        raise
    with os.fdopen(read_end) as sync:
        ready, _, _ = select.select([sync], [], [], PREPARE_TIMEOUT)
        answer = sync.readline().strip() if ready else "timed out preparing the guest"
    if answer != READY:
        if answer:  # it explained itself, and is exiting (or hung: time is up)
            process.kill()
        code = process.wait()
        cgroups.remove(made)
        raise RuntimeFailure(answer or f"container init exited with code {code} before it was ready")
    process.returncode = 0  # it outlives us by design: keep Popen from warning about it
    return process.pid, made


def _console(console_socket: Path) -> int:
    """A new pty: its master goes to the engine over `console_socket`, the slave is returned."""
    master, slave = os.openpty()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(console_socket))
            socket.send_fds(sock, [os.ttyname(slave).encode()], [master])
    except OSError as exc:
        os.close(slave)
        raise RuntimeFailure(f"--console-socket {console_socket}: {exc.strerror}") from None
    finally:
        os.close(master)
    return slave


def _write_pid_file(path: Path, pid: int) -> None:
    """Atomically, as runc does: engines poll for the file."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(str(pid))
        os.replace(temporary, path)
    except OSError as exc:
        raise RuntimeFailure(f"--pid-file {path}: {exc.strerror}") from None


def _kill_quietly(where: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((where / "init.pid").read_text()), signal.SIGKILL)


def start(container: Container) -> None:
    """Release the init process: open the FIFO for reading, take its byte, remove it."""
    status = container.status()
    if status != "created":
        what = "has stopped" if status == "stopped" else "is already running"
        raise RuntimeFailure(f"cannot start a container that {what}")
    fd = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not select.select([fd], [], [], 0.05)[0]:
            if not container.alive() or time.monotonic() > deadline:
                raise RuntimeFailure("container init did not take the start signal")
        os.read(fd, 1)
    finally:
        os.close(fd)
    container.fifo.unlink()


def kill(container: Container, sig: int) -> None:
    if container.status() == "stopped":
        raise RuntimeFailure("container not running")
    try:
        os.kill(container.record.pid, sig)
    except ProcessLookupError:
        raise RuntimeFailure("container not running") from None


def delete(container: Container, force: bool) -> None:
    """Remove a stopped (or created) container; `force` kills a running one first."""
    status = container.status()
    if status == "running" and not force:
        raise RuntimeFailure(f"cannot delete container {container.record.id} that is not stopped: {status}")
    if status != "stopped":
        os.kill(container.record.pid, signal.SIGKILL)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while container.alive():
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"container {container.record.id} did not die on SIGKILL")
            time.sleep(0.02)
    cgroups.remove(container.record.cgroups)
    container.remove()
