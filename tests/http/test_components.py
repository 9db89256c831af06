"""Components as modules: validated, compiled, cached and described like core modules."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.http.conftest import COMPONENT_OUT, build_components
from wasmhost import GuestKind, Module, ModuleError
from wasmhost.cache import CompileCache

HANDLER = "wasi:http/incoming-handler@0.2.0"
#: A component with one import and no wasi:http export, in the text format.
PLAIN = b"""(component
  (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string))))))
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func $f (canon lift (core func $i "f")))
  (export "run" (func $f)))"""


@pytest.mark.parametrize("name", ["hello", "echo", "never"])
def test_the_python_guests_are_http_components(
    component: Callable[[str], Path], component_cache: CompileCache, name: str
) -> None:
    module = Module(component(name), cache=component_cache)
    assert module.is_component
    assert module.kind is GuestKind.HTTP_COMPONENT
    assert module.exports[HANDLER] == "instance"
    handler = {(i.name, i.kind) for i in module.export_items if i.module == HANDLER}
    assert handler == {("handle", "func"), ("incoming-request", "resource"), ("response-outparam", "resource")}
    interfaces = {i.module.partition("@")[0] for i in module.imports}
    assert {"wasi:http/types", "wasi:io/streams", "wasi:cli/stdout"} <= interfaces
    assert ("[method]fields.get", "func") in {(i.name, i.kind) for i in module.imports}


@pytest.mark.parametrize(("name", "needs"), [("js-hello", "componentize-js"), ("rust-hello", "jco and cargo")])
def test_the_guests_in_other_languages_if_built(component_cache: CompileCache, name: str, needs: str) -> None:
    path = COMPONENT_OUT / f"{name}.wasm"
    if not path.exists():
        pytest.skip(f"{needs} not installed (npm ci --prefix components/js): {name} was not built")
    module = Module(path, cache=component_cache)
    assert module.kind is GuestKind.HTTP_COMPONENT
    assert any(export.startswith("wasi:http/incoming-handler@0.2.") for export in module.exports)


def test_a_component_without_an_http_export(tmp_path: Path) -> None:
    module = Module(PLAIN, cache=CompileCache(tmp_path))
    assert module.kind is GuestKind.COMPONENT
    assert module.exports == {"run": "func"}
    assert [(i.module, i.name, i.kind) for i in module.imports] == [
        ("wasi:cli/environment@0.2.0", "get-arguments", "func")
    ]
    assert repr(module) == "<Module <bytes> component>"


def test_components_are_cached_like_modules(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    assert not Module(PLAIN, cache=cache).cache_hit
    assert Module(PLAIN, cache=cache).cache_hit
    (entry,) = (tmp_path / "compiled").rglob("*.cwasm")
    entry.write_bytes(b"garbage")
    assert not Module(PLAIN, cache=cache).cache_hit  # rebuilt
    assert Module(PLAIN, cache=cache).cache_hit


def test_an_invalid_component_gets_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.wasm"
    path.write_bytes(b"\0asm\x0d\0\x01\0\x01\x05")
    with pytest.raises(ModuleError) as info:
        Module(path)
    assert str(info.value) == f"{path}: invalid component: failed to parse WebAssembly module"


def test_inspect_lists_a_component_by_interface(component: Callable[[str], Path]) -> None:
    path = component("hello")
    done = run_cli("inspect", "--json", path, timeout=300)
    info = json.loads(done.stdout)
    assert info["kind"] == "http-component"
    assert info["exports"][HANDLER] == "instance"
    assert info["exported_interfaces"][HANDLER] == ["incoming-request", "response-outparam", "handle"]
    streams = next(names for iface, names in info["imports"].items() if iface.startswith("wasi:io/streams@0.2."))
    assert "[method]output-stream.blocking-write-and-flush" in streams
    # It links; what wasmhost does not implement (UDP, listening TCP, some file calls) is listed.
    assert done.returncode == 0
    assert info["unknown_imports"] and all(
        name.startswith(("wasi:filesystem/", "wasi:sockets/")) for name in info["unknown_imports"]
    )
    assert not any("output-stream" in name for name in info["unknown_imports"])

    text = run_cli("inspect", path, timeout=300).stdout.splitlines()
    assert text[0] == f"{path}: http-component, {path.stat().st_size} bytes"
    assert f"exports from {HANDLER} (3): incoming-request, response-outparam, handle" in text
    assert any(line.startswith("imports from wasi:http/types@0.2.") for line in text)
    assert text[-1].startswith("links with wasmhost: yes; not implemented (refused or trap if called): ")


def test_an_unchanged_guest_is_not_rebuilt(component: Callable[[str], Path]) -> None:
    before = {path: path.stat().st_mtime_ns for path in COMPONENT_OUT.glob("*.wasm")}
    start = time.monotonic()
    done = build_components(timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 5
    assert done.stdout == ""  # a built guest prints its size; none did
    assert {path: path.stat().st_mtime_ns for path in COMPONENT_OUT.glob("*.wasm")} == before
