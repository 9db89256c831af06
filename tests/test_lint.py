"""Static checks run with the tests, as wasmtime-py does: mypy --strict and ruff stay clean."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _check(*command: str) -> None:
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict() -> None:
    _check("mypy", "--strict", "wasmhost")


def test_ruff() -> None:
    _check("ruff", "check", "wasmhost", "tests", "benchmarks")


def test_the_c_file_compiles_without_a_warning() -> None:
    """setup.py builds it without -Werror (a newer compiler must not break an install); here
    every warning gcc knows of at -Wall -Wextra is an error."""
    source = ROOT / "wasmhost" / "_native" / "sockio.c"
    done = subprocess.run(
        ["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", str(source)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
