"""rust-guests/build.sh checks the guests' linker before cargo starts, and names what to install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUILD = ROOT / "rust-guests" / "build.sh"
# What build.sh runs before cargo; everything else on PATH is left out.
TOOLS = ("bash", "dirname", "grep", "sed", "tr", "readlink", "cat", "basename", "env")


def build(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("linker", ["no-such-linker-for-wasm", "/nonexistent/wasm-ld"])
def test_a_configured_linker_that_is_missing_stops_the_build_in_one_line(linker: str) -> None:
    env = {**os.environ, "CARGO_TARGET_WASM32_WASI_LINKER": linker, "CARGO_TARGET_WASM32_WASIP1_LINKER": linker}
    done = build(env)
    assert done.returncode == 1
    assert re.fullmatch(rf"build\.sh: linker {re.escape(linker)} \(from CARGO_TARGET_\w+_LINKER\) .*\n", done.stderr)
    assert done.stdout == ""  # cargo never ran


def test_debian_rust_lld_whose_lld_package_is_missing(tmp_path: Path) -> None:
    """Debian's /usr/bin/rust-lld -> lld-N with package lld-N absent: one line saying `apt-get install lld-N`."""
    rustc = Path("/usr/bin/rustc")
    if not (rustc.exists() and Path("/usr/bin/cargo").exists()):
        pytest.skip("Debian's rustc and cargo are not installed")
    llvm = re.search(r"^LLVM version: (\d+)", subprocess.check_output([str(rustc), "-vV"], text=True), re.M)
    assert llvm is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "rust-lld").symlink_to(f"lld-{llvm.group(1)}")  # dangling, as after `apt-get remove lld-N`
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CARGO", "RUSTC", "WASM_TARGET"))}
    done = build({**env, "PATH": str(bin_dir)})
    assert done.returncode == 1
    assert done.stderr == (
        f"build.sh: linker rust-lld not found: {bin_dir}/rust-lld -> lld-{llvm.group(1)} is missing; "
        f"install it: apt-get install lld-{llvm.group(1)}\n"
    )
    assert done.stdout == ""
