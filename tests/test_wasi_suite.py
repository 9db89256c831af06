"""The wasi-suite guest exercises every preview1 function; hostile paths stay inside."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.conftest import run_cli

Guest = Callable[[str], Path]
SUITE_ARGS = ["--env", "SUITE_VAR=value=with=equals"]


def _suite(guest: Guest, preopen: str) -> list[str]:
    """The CLI arguments of the suite's contract, with GUEST_DIR /sandbox preopened."""
    return [*SUITE_ARGS, "--dir", preopen, str(guest("wasi-suite")), "/sandbox", "arg with space", "ünïcode"]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_mtime_ns, p.lstat().st_size) for p in root.rglob("*")}


def test_every_check_passes_and_nothing_outside_is_touched(guest: Guest, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    sandbox = outside / "sandbox"
    sandbox.mkdir(parents=True)
    (outside / "neighbour.txt").write_text("do not touch")
    before = _snapshot(outside)
    done = run_cli("run", *_suite(guest, f"/sandbox:{sandbox}"))
    lines = done.stdout.splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert failures == [], done.stdout + done.stderr
    assert done.returncode == 0
    checks = [line for line in lines if line.startswith("ok ")]
    assert len(checks) >= 80
    assert sum(line.startswith("ok sandbox-") for line in lines) >= 12
    assert any(line.startswith("ok fault-") for line in lines)
    assert lines[-1].startswith("summary: ") and lines[-1].endswith(" 0 failed")
    # Nothing escaped: the parent holds exactly what it held, the sandbox is cleaned up.
    assert _snapshot(outside) == {**before, **{k: v for k, v in _snapshot(outside).items() if k.startswith("sandbox")}}
    for name in ("escape.txt", "escape-dir", "escaped", "escaped-link"):
        assert not (outside / name).exists() and not os.path.lexists(outside / name)
    assert (outside / "neighbour.txt").read_text() == "do not touch"


def test_read_only_preopen_refuses_writes(guest: Guest, tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    done = run_cli("run", *_suite(guest, f"/sandbox:{tmp_path / 'ro'}:readonly"))
    assert done.returncode == 1
    assert "FAIL path-open-creat" in done.stdout
    assert list((tmp_path / "ro").iterdir()) == []
