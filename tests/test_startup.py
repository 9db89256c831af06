"""Starting stays cheap: the registry client (oras, requests, urllib3), the component model, the
image builder, the Kubernetes manifests and the worker supervisor load only when a command uses them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT

REGISTRY_CLIENT = ("oras", "requests", "urllib3")
#: What serving or running a local core module never needs.
ON_DEMAND = ("wasmtime.component", "wasmhost.oci.builder", "wasmhost.k8s.manifests", "multiprocessing")


def loaded_after(code: str, watched: tuple[str, ...] = (*REGISTRY_CLIENT, "wasmtime", "asyncio")) -> set[str]:
    """Which of ``watched`` a fresh interpreter holds after running ``code``."""
    report = f"\nimport sys\nprint(*[m for m in {watched!r} if m in sys.modules], file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", code + report], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stderr.splitlines()[-1].split())


@pytest.mark.parametrize(
    "code",
    [
        "import wasmhost",
        "import wasmhost.cli",
        "import wasmhost.oci",
        "from wasmhost.oci import Bundle, Reference, parse_reference, read_bundle",
        "from wasmhost.cli import build_parser\nbuild_parser().parse_args(['oci', 'pull', 'oci://example.com/a:b'])",
    ],
)
def test_imports_and_parsing_load_no_registry_client(code: str) -> None:
    assert loaded_after(code).isdisjoint(REGISTRY_CLIENT)


def test_running_a_local_module_loads_no_registry_client(guest: Callable[[str], Path]) -> None:
    code = f"from wasmhost.cli import main\nassert main(['run', {str(guest('print-args'))!r}, 'x']) == 0"
    assert loaded_after(code).isdisjoint(REGISTRY_CLIENT)


def test_a_core_module_loads_nothing_it_does_not_use(guest: Callable[[str], Path]) -> None:
    code = f"from wasmhost.cli import main\nassert main(['run', {str(guest('print-args'))!r}, 'x']) == 0"
    assert loaded_after(code, ON_DEMAND) == set()


def test_a_component_and_the_commands_that_need_them_load_them(tmp_path: Path) -> None:
    """The check above can fail: each of those modules loads once something uses it."""
    component = tmp_path / "empty.wat"
    component.write_text("(component)")
    code = (
        f"from wasmhost import Module\nModule({str(component)!r})\n"
        "from wasmhost.cli import main\nassert main(['k8s', 'containerd-config']) == 0\n"
        f"assert main(['oci', 'build', {str(tmp_path / 'missing.wasm')!r}, '-t', 'example.com/a:b']) == 2\n"
        "import wasmhost.workers"
    )
    assert loaded_after(code, ON_DEMAND) == set(ON_DEMAND)


def test_pulling_loads_the_registry_client() -> None:
    """The check above can fail: the code that talks to registries does load it."""
    assert loaded_after("from wasmhost.oci import pull") >= set(REGISTRY_CLIENT)


def test_import_wasmhost_alone_loads_neither_wasmtime_nor_asyncio() -> None:
    assert loaded_after("import wasmhost").isdisjoint({"wasmtime", "asyncio"})
    assert loaded_after("from wasmhost import Instance") >= {"wasmtime", "asyncio"}


@pytest.mark.parametrize("package", ["wasmhost", "wasmhost.oci", "wasmhost.k8s"])
def test_every_public_name_resolves(package: str) -> None:
    code = (
        f"import importlib\nmodule = importlib.import_module({package!r})\n"
        "missing = [n for n in module.__all__ if getattr(module, n, None) is None]\n"
        "assert not missing, missing\n"
        "try:\n    module.no_such_name\nexcept AttributeError as exc:\n    assert 'no_such_name' in str(exc)\n"
        "else:\n    raise AssertionError('no AttributeError')"
    )
    loaded_after(code)
