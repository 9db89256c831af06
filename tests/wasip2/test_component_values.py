"""The component binding's converters: every WIT type shape wasmhost supports makes a round trip
host -> guest -> host -> guest -> host through Wasmtime's canonical ABI.

The guest is a component written here in WAT: its export ``g`` lowers its arguments into its
memory and passes them on to the imported host function ``f``, then lifts what ``f`` returned.
A parameter list too large to pass flat (``pad`` makes it so) and a two-value result travel
through memory, so ``g`` is the same few instructions whatever the type under test.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wasmtime import component as wc

from wasmhost._native.component import Err, ExportIndex, Linker, Ok
from wasmhost._native.core import engine
from wasmhost._native.fiber import Store

PAD = (0,) * 16

MEMORY = """
  (core module $Mem
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
                              (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $at) (local.get $size)))
      (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.add (i32.shr_u (global.get $next) (i32.const 16)) (i32.const 1))))))
      (local.get $at)))
  (core instance $mem (instantiate $Mem))
  (alias core export $mem "memory" (core memory $memory))
  (alias core export $mem "realloc" (core func $realloc))
"""


def forwarder(defs: list[str], ty: str, f_name: str = "f") -> str:
    """A component importing ``f(pad, x: ty) -> tuple<ty, u8>`` and exporting ``g`` of the same type."""
    pad = "(tuple" + " u8" * 16 + ")"
    functype = f'(func (param "pad" {pad}) (param "x" {ty}) (result (tuple {ty} u8)))'
    return f"""
(component
  {"".join(defs)}
  (import "{f_name}" {functype.replace("(func", "(func $f", 1)})
  {MEMORY}
  (core func $lowered (canon lower (func $f) (memory $memory) (realloc $realloc)))
  (core module $Main
    (import "" "f" (func $f (param i32 i32)))
    (import "" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (func (export "g") (param $args i32) (result i32)
      (local $ret i32)
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 4096)))
      (call $f (local.get $args) (local.get $ret))
      (local.get $ret)))
  (core instance $main (instantiate $Main (with "" (instance (export "f" (func $lowered))
                                                            (export "realloc" (func $realloc))))))
  (func $g {functype[len("(func ") : -1]} (canon lift (core func $main "g") (memory $memory)
                                               (realloc $realloc)))
  (export "g" (func $g)))
"""


@attrs.frozen
class Shape:
    """A WIT type: its WAT text (``ty``), the named types it needs (``defs``), and its values."""

    ty: str
    defs: tuple[str, ...]
    values: st.SearchStrategy[Any]


_NAMES = itertools.count()


def _named(body: str, defs: tuple[str, ...], values: st.SearchStrategy[Any]) -> Shape:
    """Records, variants, enums and flags must be named (imported) to appear in a function type."""
    n = next(_NAMES)
    define = f'(type $d{n} {body}) (import "t{n}" (type $t{n} (eq $d{n})))'
    return Shape(f"$t{n}", (*defs, define), values)


def _ints(name: str, bits: int, signed: bool) -> Shape:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return Shape(name, (), st.integers(low, high))


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
BASE = [
    Shape("bool", (), st.booleans()),
    *[_ints(f"{'s' if signed else 'u'}{bits}", bits, signed) for bits in (8, 16, 32, 64) for signed in (False, True)],
    Shape("f32", (), st.floats(width=32, allow_nan=False)),
    Shape("f64", (), st.floats(allow_nan=False)),
    Shape("char", (), st.characters(exclude_categories=("Cs",))),
    Shape("string", (), _TEXT),
    Shape("(list u8)", (), st.binary(max_size=300)),
]


def _defs(*shapes: Shape) -> tuple[str, ...]:
    return tuple(d for s in shapes for d in s.defs)


def _record(fields: list[Shape]) -> Shape:
    body = "(record " + " ".join(f'(field "f{i}" {s.ty})' for i, s in enumerate(fields)) + ")"
    return _named(body, _defs(*fields), st.tuples(*(s.values for s in fields)))


def _tuple(items: list[Shape]) -> Shape:
    return Shape("(tuple " + " ".join(s.ty for s in items) + ")", _defs(*items), st.tuples(*(s.values for s in items)))


def _variant(cases: list[Shape | None]) -> Shape:
    body = "(variant " + " ".join(
        f'(case "c{i}" {s.ty})' if s is not None else f'(case "c{i}")' for i, s in enumerate(cases)
    ) + ")"  # fmt: skip
    values = st.one_of(*(
        st.tuples(st.just(f"c{i}"), s.values) if s is not None else st.just((f"c{i}", None))
        for i, s in enumerate(cases)
    ))  # fmt: skip
    return _named(body, _defs(*(s for s in cases if s is not None)), values)


def _enum(count: int) -> Shape:
    names = [f"e{i}" for i in range(count)]
    return _named("(enum " + " ".join(f'"{n}"' for n in names) + ")", (), st.sampled_from(names))


def _flags(count: int) -> Shape:
    names = [f"g{i}" for i in range(count)]
    return _named("(flags " + " ".join(f'"{n}"' for n in names) + ")", (), st.frozensets(st.sampled_from(names)))


def _list(item: Shape) -> Shape:
    """``list<u8>`` is ``bytes`` (the fast path); any other list is a Python list."""
    values = st.binary(max_size=40) if item.ty == "u8" else st.lists(item.values, max_size=4)
    return Shape(f"(list {item.ty})", item.defs, values)


def _option(inner: Shape) -> Shape:
    return Shape(f"(option {inner.ty})", inner.defs, st.none() | inner.values)


def _result(ok: Shape | None, err: Shape | None) -> Shape:
    ok_ty = ok.ty if ok is not None else ""
    err_ty = f"(error {err.ty})" if err is not None else ""
    oks = st.builds(Ok, ok.values) if ok is not None else st.just(Ok(None))
    errs = st.builds(Err, err.values) if err is not None else st.just(Err(None))
    return Shape(f"(result {ok_ty} {err_ty})", _defs(*(s for s in (ok, err) if s is not None)), oks | errs)


def _extend(children: st.SearchStrategy[Shape]) -> st.SearchStrategy[Shape]:
    some = st.lists(children, min_size=1, max_size=3)
    maybe = st.none() | children
    return st.one_of(
        children.map(_list),
        some.map(_record),
        some.map(_tuple),
        st.lists(maybe, min_size=1, max_size=3).map(_variant),
        st.integers(1, 5).map(_enum),
        st.integers(1, 32).map(_flags),
        children.filter(lambda s: not s.ty.startswith("(option")).map(_option),
        st.tuples(maybe, maybe).map(lambda pair: _result(*pair)),
    )


SHAPES = st.recursive(st.sampled_from(BASE), _extend, max_leaves=6)


class _NoResources:
    def drop_resource(self, rep: int) -> None:
        raise AssertionError(f"no resource was created, yet {rep} was dropped")


def call_through_guest(defs: tuple[str, ...], ty: str, value: Any,
                       host: Callable[[Any, Any, Any], Any] | None = None) -> tuple[Any, Any]:  # fmt: skip
    """Pass ``value`` to the guest's ``g``; returns (what the host function saw, what ``g`` returned)."""
    component = wc.Component(engine(False), forwarder(list(defs), ty))
    seen: list[Any] = []

    def f(_state: object, pad: Any, x: Any) -> Any:
        assert pad == PAD
        seen.append(x)
        return (x, 7)

    linker = Linker(engine(False))
    linker.function("", "f", host or f)

    async def run() -> Any:
        store = Store(None, None, lambda: None)
        instance = await linker.instantiate(store, component, _NoResources())
        try:
            export = ExportIndex(component, ["g"])
            try:
                return await instance.call(export, PAD, value)
            finally:
                export.close()
        finally:
            instance.close()

    try:
        returned = asyncio.run(run())
    finally:
        linker.close()
    return (seen[0] if seen else None), returned


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHAPES.flatmap(lambda shape: st.tuples(st.just(shape), shape.values)))
def test_every_type_shape_makes_a_round_trip(case: tuple[Shape, Any]) -> None:
    shape, value = case
    seen, returned = call_through_guest(shape.defs, shape.ty, value)
    assert seen == value
    assert returned == (value, 7)


def test_list_of_bytes_is_bytes_both_ways_and_fast() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    start = time.monotonic()
    seen, returned = call_through_guest((), "(list u8)", data)
    elapsed = time.monotonic() - start
    assert isinstance(seen, bytes) and seen == data
    assert returned == (data, 7)
    assert elapsed < 5, f"1 MiB list<u8> took {elapsed:.1f}s each way"


def test_a_result_with_an_error_inside_an_option_is_expressible() -> None:
    """``result<option<T>, E>`` with an error: wasmtime-py cannot express it; here it is ``Err``."""
    ty_defs = _variant([BASE[0], None])
    shape = _result(_option(Shape("string", (), _TEXT)), ty_defs)
    for value in (Err(("c0", True)), Err(("c1", None)), Ok(None), Ok("x")):
        assert call_through_guest(shape.defs, shape.ty, value) == (value, (value, 7))


def test_a_host_function_failure_traps_the_guest_with_its_reason() -> None:
    def broken(_state: object, _pad: Any, _x: Any) -> Any:
        raise RuntimeError("out of order")

    with pytest.raises(RuntimeError, match="out of order"):
        call_through_guest((), "u32", 1, broken)


def test_a_wrong_value_from_the_host_traps_instead_of_corrupting() -> None:
    def wrong(_state: object, _pad: Any, x: Any) -> Any:
        return (("not", "an", "enum"), 7)

    shape = _enum(2)
    with pytest.raises(ValueError, match="not one of the enum"):
        call_through_guest(shape.defs, shape.ty, "e0", wrong)


async def _suspend_then(value: Any) -> Any:
    await asyncio.sleep(0.001)
    return value


def test_an_async_host_function_suspends_the_guest_and_returns_its_value() -> None:
    async def later(_state: object, _pad: Any, x: Any) -> Any:
        return (await _suspend_then(x), 7)

    shape = _record([Shape("string", (), _TEXT), Shape("(list u8)", (), st.binary())])
    value = ("héllo", b"\x00\x01\xff")
    assert call_through_guest(shape.defs, shape.ty, value, later) == (None, (value, 7))
