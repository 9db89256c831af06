"""A minimal engine for tests, as containerd's shim and conmon are: a child subreaper that runs
`create`, then `start`, waits for the container's process and prints how it ended as JSON.

Usage: python -m tests.runtime.reaper RUNTIME ROOT BUNDLE ID
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def main(runtime: str, root: str, bundle: str, container_id: str) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    pid_file = Path(root).parent / f"{container_id}.pid"
    with tempfile.TemporaryFile("w+") as err:  # a file: the container keeps create's stdio open
        command = [runtime, "--root", root, "create", "--bundle", bundle, "--pid-file", str(pid_file), container_id]
        created = subprocess.run(command, stderr=err)
        err.seek(0)
        result: dict[str, object] = {"create": created.returncode, "create_stderr": err.read()}
    if created.returncode == 0:
        pid = int(pid_file.read_text())
        started = subprocess.run([runtime, "--root", root, "start", container_id], capture_output=True, text=True)
        result.update(start=started.returncode, start_stderr=started.stderr)
        _, status = os.waitpid(pid, 0)  # the container's process is ours to reap, as the shim's is
        result.update(exit_code=os.waitstatus_to_exitcode(status))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
