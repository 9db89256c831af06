"""Module validation errors, guest kinds, and the on-disk compile cache (and when it is not trusted)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from wasmhost import GuestKind, Module, ModuleError
from wasmhost.cache import CompileCache

COMMAND = '(module (func (export "_start")))'
SOCKETS = """(module
  (import "wasi_snapshot_preview1" "sock_open" (func (param i32 i32 i32) (result i32)))
  (func (export "_start")))"""
COMPONENT = b"\0asm\x0d\0\x01\0"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello world", "not a WebAssembly module (bad magic)"),
        (b"\0as", "truncated WebAssembly module (3 bytes)"),
        (COMPONENT + b"\x01\x05", "invalid component"),
        (b"\0asm\x01\0\0\0\x01\x05", "invalid module"),
        (b"", "not a WebAssembly module (bad magic)"),
    ],
)
def test_invalid_modules_get_one_clear_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "app.wasm"
    path.write_bytes(content)
    with pytest.raises(ModuleError) as info:
        Module(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModuleError, match="no such file"):
        Module(tmp_path / "absent.wasm")


def test_kinds() -> None:
    assert Module(COMMAND.encode()).kind is GuestKind.COMMAND
    assert Module(SOCKETS.encode()).kind is GuestKind.SOCKET_SERVER
    assert Module(b'(module (func (export "f")))').kind is GuestKind.REACTOR


def test_imports_and_exports_are_listed() -> None:
    module = Module(SOCKETS.encode())
    assert [(i.module, i.name, i.kind) for i in module.imports] == [("wasi_snapshot_preview1", "sock_open", "func")]
    assert module.exports == {"_start": "func"}


def test_second_load_uses_the_cache(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    assert not Module(COMMAND.encode(), cache=cache).cache_hit
    assert Module(COMMAND.encode(), cache=cache).cache_hit
    assert len(list((tmp_path / "compiled").rglob("*.cwasm"))) == 1


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    Module(COMMAND.encode(), cache=cache)
    (entry,) = (tmp_path / "compiled").rglob("*.cwasm")
    entry.write_bytes(b"garbage")
    module = Module(COMMAND.encode(), cache=cache)
    assert not module.cache_hit
    assert entry.read_bytes() != b"garbage"
    assert Module(COMMAND.encode(), cache=cache).cache_hit


def test_unwritable_cache_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    module = Module(COMMAND.encode(), cache=CompileCache(blocker))
    assert module.kind is GuestKind.COMMAND
    assert not list(tmp_path.glob(".tmp-*"))


def test_cache_writes_are_atomic(tmp_path: Path) -> None:
    """No temp files remain, and the entry is complete (loadable)."""
    cache = CompileCache(tmp_path)
    Module(COMMAND.encode(), cache=cache)
    leftovers = [p for p in (tmp_path / "compiled").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    assert os.path.getsize(next((tmp_path / "compiled").rglob("*.cwasm"))) > 0


def test_concurrent_processes_share_the_cache_safely(tmp_path: Path) -> None:
    """Four processes compile the same module into one empty cache at once."""
    import subprocess
    import sys

    module = tmp_path / "m.wat"
    module.write_text(COMMAND)
    code = (
        "import sys; from pathlib import Path; from wasmhost import Module; from wasmhost.cache import CompileCache;"
        "print(Module(sys.argv[1], cache=CompileCache(Path(sys.argv[2]))).kind.value)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(module), str(tmp_path / "cache")], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    assert outputs == [b"command\n"] * 4
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".cwasm"
    assert Module(module, cache=CompileCache(tmp_path / "cache")).cache_hit


def _cached(root: Path) -> tuple[CompileCache, list[Path]]:
    """A cache holding COMMAND's entry, and its levels: root, compiled/, the 2-hex directory, the entry."""
    cache = CompileCache(root)
    assert not Module(COMMAND.encode(), cache=cache).cache_hit
    (entry,) = (root / "compiled").rglob("*.cwasm")
    return cache, [root, root / "compiled", entry.parent, entry]


def test_cache_levels_are_created_private(tmp_path: Path) -> None:
    _, levels = _cached(tmp_path / "parent" / "cache")
    assert [stat.S_IMODE(level.stat().st_mode) for level in levels] == [0o700, 0o700, 0o700, 0o600]


@pytest.mark.parametrize("change", ["g+w", "o+w", "chown"])
@pytest.mark.parametrize("level", [0, 1, 2, 3], ids=["root", "compiled", "subdirectory", "entry"])
def test_an_untrusted_cache_level_is_refused_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, level: int, change: str
) -> None:
    """As ssh treats its keys: another owner, or group or world write access, anywhere from the
    cache root down to the entry, and the entry is neither loaded nor replaced."""
    cache, levels = _cached(tmp_path / "cache")
    target, entry = levels[level], levels[-1]
    original, inode = target.stat(), entry.stat().st_ino
    if change == "chown":
        if os.geteuid() != 0:
            pytest.skip("giving a file to another uid (65534) needs root")
        os.chown(target, 65534, 65534)
        reason = f"owned by uid 65534, not by uid {os.geteuid()}"
    else:
        mode = stat.S_IMODE(original.st_mode) | (stat.S_IWGRP if change == "g+w" else stat.S_IWOTH)
        os.chmod(target, mode)
        reason = f"{'group' if change == 'g+w' else 'world'}-writable (mode {mode:04o})"
    with caplog.at_level(logging.WARNING, logger="wasmhost"):
        loads = [Module(COMMAND.encode(), cache=cache).cache_hit for _ in range(2)]
    assert loads == [False, False]
    assert [record.getMessage() for record in caplog.records] == [
        f"{target}: {reason}; compile cache not trusted, compiling without it"
    ]
    assert entry.stat().st_ino == inode
    os.chown(target, original.st_uid, original.st_gid)
    os.chmod(target, stat.S_IMODE(original.st_mode))
    assert Module(COMMAND.encode(), cache=cache).cache_hit


def test_a_symbolic_link_entry_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache, levels = _cached(tmp_path / "cache")
    entry, elsewhere = levels[-1], tmp_path / "elsewhere.cwasm"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING, logger="wasmhost"):
        assert not Module(COMMAND.encode(), cache=cache).cache_hit
    assert [record.getMessage() for record in caplog.records] == [
        f"{entry}: a symbolic link; compile cache not trusted, compiling without it"
    ]


def test_the_cli_warns_once_and_runs_without_the_cache(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    module, root = tmp_path / "app.wat", tmp_path / "cache"
    module.write_text(COMMAND)
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # whatever the umask
    done = run_cli("run", module, env={**os.environ, "WASMHOST_CACHE_DIR": str(root)})
    assert (done.returncode, done.stderr) == (
        0,
        f"wasmhost: {root}: group- and world-writable (mode 0777); compile cache not trusted, compiling without it\n",
    )
    assert list(root.iterdir()) == []
