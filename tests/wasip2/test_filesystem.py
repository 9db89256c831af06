"""wasi:filesystem over preopens, at the host-function level (no test guest opens files yet):
the preview1 sandbox (no escape by ``..``, absolute paths or symlinks) and read-only preopens."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import open_fds
from wasmhost import Preopen
from wasmhost._native.component import Err, Ok
from wasmhost.wasip2 import WasiConfig, io
from wasmhost.wasip2 import filesystem as fs
from wasmhost.wasip2.context import Wasi

NOFOLLOW: frozenset[str] = frozenset()
READ = frozenset({"read"})
WRITE = frozenset({"read", "write"})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hello.txt").write_bytes(b"hello from the host\n")
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "secret.txt").write_bytes(b"outside the preopen\n")
    (tmp_path / "data" / "escape").symlink_to(tmp_path / "secret.txt")
    return tmp_path


def preopened(tree: Path, read_only: bool) -> tuple[Wasi, int]:
    wasi = Wasi(WasiConfig(preopens=(Preopen("/data", tree / "data", read_only),)))
    [(root, name)] = fs.get_directories(wasi)
    assert name == "/data"
    return wasi, root


def test_a_file_in_a_preopen_is_read_through_a_stream(tree: Path) -> None:
    wasi, root = preopened(tree, read_only=True)
    opened = fs.open_at(wasi, root, NOFOLLOW, "sub/../hello.txt", frozenset(), READ)
    assert isinstance(opened, Ok)
    stream = fs.read_via_stream(wasi, opened.value, 6)
    assert isinstance(stream, Ok)

    async def read_all() -> bytes:
        data = b""
        while isinstance(chunk := await io.blocking_read(wasi, stream.value, 4), Ok):
            data += chunk.value
        assert chunk == Err(("closed", None))
        return data

    assert asyncio.run(read_all()) == b"from the host\n"
    assert fs.read(wasi, opened.value, 100, 0) == Ok((b"hello from the host\n", True))
    stat = fs.stat_at(wasi, root, NOFOLLOW, "hello.txt")
    assert isinstance(stat, Ok) and stat.value[:3] == ("regular-file", 1, 20)
    wasi.close()


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd", "sub/../../secret.txt"])
def test_paths_leaving_the_preopen_are_refused(tree: Path, path: str) -> None:
    wasi, root = preopened(tree, read_only=False)
    assert fs.open_at(wasi, root, NOFOLLOW, path, frozenset(), READ) == Err("not-permitted")
    wasi.close()


def test_a_symlink_leading_out_is_refused_when_followed(tree: Path) -> None:
    wasi, root = preopened(tree, read_only=False)
    assert fs.open_at(wasi, root, frozenset({"symlink-follow"}), "escape", frozenset(), READ) == Err("not-permitted")
    stat = fs.stat_at(wasi, root, NOFOLLOW, "escape")
    assert isinstance(stat, Ok) and stat.value[0] == "symbolic-link"
    wasi.close()


def test_a_read_only_preopen_refuses_every_change(tree: Path) -> None:
    wasi, root = preopened(tree, read_only=True)
    create = frozenset({"create"})
    assert fs.open_at(wasi, root, NOFOLLOW, "new.txt", create, WRITE) == Err("read-only")
    assert fs.open_at(wasi, root, NOFOLLOW, "hello.txt", frozenset({"truncate"}), READ) == Err("read-only")
    assert fs.create_directory_at(wasi, root, "made") == Err("read-only")
    assert fs.unlink_file_at(wasi, root, "hello.txt") == Err("read-only")
    opened = fs.open_at(wasi, root, NOFOLLOW, "hello.txt", frozenset(), READ)
    assert isinstance(opened, Ok)
    assert fs.write_via_stream(wasi, opened.value, 0) == Err("read-only")
    assert fs.write(wasi, opened.value, b"x", 0) == Err("read-only")
    assert fs.get_flags(wasi, root) == Ok(frozenset({"read"}))
    assert sorted(os.listdir(tree / "data")) == ["escape", "hello.txt", "sub"]
    assert (tree / "data" / "hello.txt").read_bytes() == b"hello from the host\n"
    wasi.close()


def test_a_writable_preopen_creates_writes_lists_and_removes(tree: Path) -> None:
    before = open_fds()
    wasi, root = preopened(tree, read_only=False)
    opened = fs.open_at(wasi, root, NOFOLLOW, "sub/new.txt", frozenset({"create", "exclusive"}), WRITE)
    assert isinstance(opened, Ok)
    sink = fs.write_via_stream(wasi, opened.value, 0)
    assert isinstance(sink, Ok)
    assert asyncio.run(io.blocking_write_and_flush(wasi, sink.value, b"written by the guest")) == Ok(None)
    assert (tree / "data" / "sub" / "new.txt").read_bytes() == b"written by the guest"
    assert fs.open_at(wasi, root, NOFOLLOW, "sub/new.txt", frozenset({"create", "exclusive"}), WRITE) == Err("exist")
    assert fs.create_directory_at(wasi, root, "made") == Ok(None)
    listing = fs.read_directory(wasi, root)
    assert isinstance(listing, Ok)
    names = []
    while (entry := fs.read_directory_entry(wasi, listing.value)) != Ok(None):
        assert isinstance(entry, Ok)
        names.append(entry.value)
    assert sorted(names) == [
        ("directory", "made"), ("directory", "sub"), ("regular-file", "hello.txt"), ("symbolic-link", "escape")
    ]  # fmt: skip
    assert fs.remove_directory_at(wasi, root, "made") == Ok(None)
    assert fs.unlink_file_at(wasi, root, "sub/new.txt") == Ok(None)
    assert fs.unlink_file_at(wasi, root, "sub/new.txt") == Err("no-entry")
    wasi.close()
    assert not open_fds() - before  # every descriptor, stream and listing was closed with the instance
