"""File helpers shared by the caches."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half.

    Creates the parent directories, writes a temporary file in the same directory (so the
    final rename stays in one file system) and removes it if anything fails. `fsync` also
    flushes the data to disk before the rename, for files that must survive a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
