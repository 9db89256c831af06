"""Sandboxed path resolution against hostile paths, on a real directory tree."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmhost.wasi import fs
from wasmhost.wasi.abi import Errno, WasiError


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    sandbox = tmp_path / "sandbox"
    (sandbox / "sub" / "deep").mkdir(parents=True)
    (sandbox / "sub" / "file.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink("..", sandbox / "up")
    os.symlink("/", sandbox / "abs")
    os.symlink("sub/deep", sandbox / "rel")
    os.symlink("loop", sandbox / "loop")
    fd = os.open(sandbox, os.O_RDONLY | os.O_DIRECTORY)
    yield fd, sandbox
    os.close(fd)


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../secret.txt",
        "sub/../../secret.txt",
        "/etc/passwd",
        "up/secret.txt",
        "abs/etc/passwd",
        "sub/deep/../../..",
    ],
)
def test_escapes_are_not_capable(root: tuple[int, Path], path: str) -> None:
    with pytest.raises(WasiError) as info, fs.resolve(root[0], path, follow=True):
        pass
    assert info.value.errno == Errno.NOTCAPABLE


def test_final_symlink_not_followed_unless_asked(root: tuple[int, Path]) -> None:
    with fs.resolve(root[0], "up", follow=False) as (_d, name):
        assert name == "up"
    with pytest.raises(WasiError) as info, fs.resolve(root[0], "up", follow=True):
        pass
    assert info.value.errno == Errno.NOTCAPABLE


@pytest.mark.parametrize(("path", "expected"), [("sub/file.txt", "inside"), ("rel/../file.txt", "inside")])
def test_paths_inside_resolve(root: tuple[int, Path], path: str, expected: str) -> None:
    with fs.resolve(root[0], path, follow=True) as (d, name):
        fd = os.open(name, os.O_RDONLY, dir_fd=d)
        try:
            assert os.read(fd, 100).decode() == expected
        finally:
            os.close(fd)


def test_symlink_loop(root: tuple[int, Path]) -> None:
    with pytest.raises(WasiError) as info, fs.resolve(root[0], "loop/x", follow=True):
        pass
    assert info.value.errno == Errno.LOOP


def test_no_descriptor_leaks(root: tuple[int, Path]) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for path in ["sub/deep/x", "rel/x", "up/x", "sub/deep/../../../x"]:
        try:
            with fs.resolve(root[0], path, follow=True):
                pass
        except WasiError:
            pass
    assert set(os.listdir("/proc/self/fd")) == before
