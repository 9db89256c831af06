"""Imports wasmhost does not implement still link: filesystem and sockets functions return the
interface's ``unsupported``/``not-supported``, anything else traps naming the function
(components written in WAT)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wasmtime import component as wc

from tests.wasip2.test_component_values import MEMORY
from wasmhost import Module
from wasmhost._native.component import Err, ExportIndex
from wasmhost._native.fiber import Store
from wasmhost.wasip2 import WasiConfig
from wasmhost.wasip2.context import Wasi
from wasmhost.wasip2.linking import build_linker


def caller(interface: str) -> bytes:
    """A component importing ``interface`` with one function ``f: () -> result<u32, error-code>``
    and exporting ``g``, which calls it."""
    return f"""
(component
  (import "{interface}" (instance $i
    (type $codes (enum "access" "unsupported" "not-supported"))
    (export "error-code" (type $e (eq $codes)))
    (export "f" (func (result (result u32 (error $e)))))))
  (alias export $i "error-code" (type $e))
  (alias export $i "f" (func $f))
  {MEMORY}
  (core func $lowered (canon lower (func $f) (memory $memory)))
  (core module $Main
    (import "" "f" (func $f (param i32)))
    (func (export "g") (result i32) (call $f (i32.const 16)) (i32.const 16)))
  (core instance $main (instantiate $Main (with "" (instance (export "f" (func $lowered))))))
  (func (export "g") (result (result u32 (error $e))) (canon lift (core func $main "g") (memory $memory))))
""".encode()


def call_g(interface: str) -> Any:
    module = Module(caller(interface))
    component: wc.Component = module.compiled(fuel=False)
    linker = build_linker(module.imports)

    async def run() -> Any:
        instance = await linker.instantiate(Store(None, None, lambda: None), component, Wasi(WasiConfig()))
        export = ExportIndex(component, ["g"])
        try:
            return await instance.call(export)
        finally:
            export.close()
            instance.close()

    try:
        return asyncio.run(run())
    finally:
        linker.close()


@pytest.mark.parametrize(
    ("interface", "refusal"),
    [("wasi:filesystem/types@0.2.9", "unsupported"), ("wasi:sockets/tcp@0.2.3", "not-supported")],
)
def test_unprovided_filesystem_and_socket_functions_return_their_refusal(interface: str, refusal: str) -> None:
    assert call_g(interface) == Err(refusal)


def test_any_other_unprovided_function_traps_naming_itself() -> None:
    with pytest.raises(NotImplementedError, match=r"example:thing/stuff@1\.0\.0#f is not implemented by wasmhost"):
        call_g("example:thing/stuff@1.0.0")
