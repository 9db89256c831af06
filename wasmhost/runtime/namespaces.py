"""Entering a network namespace: `setns` (os.setns on Python 3.12+, libc before) or `unshare`.

Namespaces are per thread: call these before the process starts any thread (the event loop's
executor, wasmtime's), so everything the guest opens lives in the namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Final

from .spec import NetworkNamespace

CLONE_NEWNET: Final = 0x40000000


def enter(namespace: NetworkNamespace) -> None:
    """Join `namespace.path`, or make a new network namespace when it has none (as runc does)."""
    if namespace.path is None:
        _call("unshare", CLONE_NEWNET)
        return
    fd = os.open(namespace.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _call("setns", fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def _call(name: str, *args: int) -> None:
    """`os.NAME` where Python has it (3.12+), else libc's."""
    native = getattr(os, name, None)
    if native is not None:
        native(*args)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
