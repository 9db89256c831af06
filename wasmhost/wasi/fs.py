"""Sandboxed path resolution: a guest path never leaves the directory it is relative to.

Resolution walks the path one component at a time with ``openat(O_NOFOLLOW)``, expanding
symlinks itself, so ``..``, absolute paths and symlinks that lead outside are refused with
``NOTCAPABLE`` before the host touches anything outside the preopen.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from .abi import Errno, WasiError, from_os

_MAX_SYMLINKS = 32
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextmanager
def resolve(root_fd: int, path: str, follow: bool) -> Iterator[tuple[int, str]]:
    """Yield ``(dir_fd, name)`` for ``path`` (a guest string: no NUL) under ``root_fd``;
    ``name`` is never a path.

    ``follow`` says whether a symlink in the last component is followed too. The yielded
    descriptor is only valid inside the ``with`` block.
    """
    if not path:
        raise WasiError(Errno.NOENT)
    stack = [root_fd]
    try:
        name = _walk(stack, path, follow)
        yield stack[-1], name
    finally:
        for fd in stack[1:]:
            os.close(fd)


def _walk(stack: list[int], path: str, follow: bool) -> str:
    pending = _components(path)
    links = 0
    while True:
        if not pending:
            return "."
        part = pending.pop(0)
        if part == "..":
            if len(stack) == 1:
                raise WasiError(Errno.NOTCAPABLE)
            os.close(stack.pop())
            continue
        last = not pending
        if last and not follow:
            return part
        target = _readlink(stack[-1], part)
        if target is not None:
            links += 1
            if links > _MAX_SYMLINKS:
                raise WasiError(Errno.LOOP)
            pending[:0] = _components(target)
            continue
        if last:
            return part
        try:
            stack.append(os.open(part, _DIR_FLAGS, dir_fd=stack[-1]))
        except OSError as exc:
            raise from_os(exc) from None


def _components(path: str) -> list[str]:
    if path.startswith("/"):
        raise WasiError(Errno.NOTCAPABLE)
    return [p for p in path.split("/") if p not in ("", ".")]


def _readlink(dir_fd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
            return None
        raise from_os(exc) from None
