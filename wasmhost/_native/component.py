"""Components through Wasmtime's component C API (``wasmtime/component/*.h``): a linker of
host functions and resources, instantiation and calls, all run as fibers like core calls;
and compiling, caching and describing components (through wasmtime-py).

Values cross the C API as ``wasmtime_component_val_t`` (32 bytes: kind at 0, payload at 8).
Each function's converters are built once, from its type, the first time it is called;
a call then only walks memory:

- ``list<u8>`` is ``bytes``, read with one strided slice and written through a reusable
  buffer, never an object per byte;
- ``result``, ``option``, ``variant``, ``enum`` and ``flags`` map to ``Ok``/``Err``, ``None``
  or the value, ``(case, payload)``, the case name, and a frozenset of names;
- records and tuples are tuples in declaration order;
- resources are host resources, seen in Python as their ``rep`` (an int). A resource the
  guest passes to the host (``own`` or ``borrow``) is released here, once, as it is read.

Every buffer handed to Wasmtime is allocated by Wasmtime (``wasm_byte_vec_new``,
``*_new_uninit``, ``wasmtime_component_val_new``), so Wasmtime frees what it owns.
"""

from __future__ import annotations

import ctypes
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

import attrs
import wasmtime
from wasmtime import _bindings as ffi
from wasmtime import component as wc
from wasmtime._ffi import dll as _dll

from .core import Import, engine
from .fiber import _NO_FINALIZER, _VOID, Store, _Continuation, _Finalizer, _ready, start_host_call

_P = ctypes.POINTER
_SIZE = ctypes.c_size_t
_NAME = ctypes.c_char_p


def _c(name: str, restype: Any, *argtypes: Any) -> Any:
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, _dll))


# --- the C functions used (our own prototypes: raw pointers, no wrapper per call) --------

_LINKER_NEW = _c("wasmtime_component_linker_new", _VOID, _VOID)
_LINKER_ROOT = _c("wasmtime_component_linker_root", _VOID, _VOID)
_LINKER_DELETE = _c("wasmtime_component_linker_delete", None, _VOID)
_LINKER_INSTANCE_DELETE = _c("wasmtime_component_linker_instance_delete", None, _VOID)
_ADD_INSTANCE = _c("wasmtime_component_linker_instance_add_instance", _VOID, _VOID, _NAME, _SIZE, _P(_VOID))
_DTOR = ctypes.CFUNCTYPE(_VOID, _VOID, _VOID, ctypes.c_uint32)
_ADD_RESOURCE = _c(
    "wasmtime_component_linker_instance_add_resource", _VOID, _VOID, _NAME, _SIZE, _VOID, _DTOR, _VOID, _Finalizer
)
_SYNC_CB = ctypes.CFUNCTYPE(_VOID, _VOID, _VOID, _VOID, _VOID, _SIZE, _VOID, _SIZE)
_ASYNC_CB = ctypes.CFUNCTYPE(None, _VOID, _VOID, _VOID, _VOID, _SIZE, _VOID, _SIZE, _P(_VOID), _P(_Continuation))
_ADD_FUNC = _c("wasmtime_component_linker_instance_add_func", _VOID, _VOID, _NAME, _SIZE, _SYNC_CB, _VOID, _Finalizer)
_ADD_FUNC_ASYNC = _c(
    "wasmtime_component_linker_instance_add_func_async", _VOID, _VOID, _NAME, _SIZE, _ASYNC_CB, _VOID, _Finalizer
)
_INSTANTIATE = _c("wasmtime_component_linker_instantiate_async", _VOID, _VOID, _VOID, _VOID, _VOID, _P(_VOID))
_CALL = _c("wasmtime_component_func_call_async", _VOID, _VOID, _VOID, _VOID, _SIZE, _VOID, _SIZE, _P(_VOID))
_POLL = _c("wasmtime_call_future_poll", ctypes.c_bool, _VOID)
_DELETE_FUTURE = _c("wasmtime_call_future_delete", None, _VOID)
_EXPORT_INDEX = _c("wasmtime_component_get_export_index", _VOID, _VOID, _VOID, _NAME, _SIZE)
_EXPORT_INDEX_DELETE = _c("wasmtime_component_export_index_delete", None, _VOID)
_GET_FUNC = _c("wasmtime_component_instance_get_func", ctypes.c_bool, _VOID, _VOID, _VOID, _VOID)
_FUNC_TYPE_PARAMS = _c("wasmtime_component_func_type_param_count", _SIZE, _VOID)
_FUNC_TYPE_PARAM = _c(
    "wasmtime_component_func_type_param_nth", ctypes.c_bool, _VOID, _SIZE, _P(_VOID), _P(_SIZE), _VOID
)
_FUNC_TYPE_RESULT = _c("wasmtime_component_func_type_result", ctypes.c_bool, _VOID, _VOID)
_VALTYPE_DELETE = _c("wasmtime_component_valtype_delete", None, _VOID)
_LIST_ELEMENT = _c("wasmtime_component_list_type_element", None, _VOID, _VOID)
_RECORD_COUNT = _c("wasmtime_component_record_type_field_count", _SIZE, _VOID)
_RECORD_FIELD = _c("wasmtime_component_record_type_field_nth", ctypes.c_bool, _VOID, _SIZE, _P(_VOID), _P(_SIZE), _VOID)
_TUPLE_COUNT = _c("wasmtime_component_tuple_type_types_count", _SIZE, _VOID)
_TUPLE_NTH = _c("wasmtime_component_tuple_type_types_nth", ctypes.c_bool, _VOID, _SIZE, _VOID)
_VARIANT_COUNT = _c("wasmtime_component_variant_type_case_count", _SIZE, _VOID)
_VARIANT_CASE = _c(
    "wasmtime_component_variant_type_case_nth", ctypes.c_bool, _VOID, _SIZE, _P(_VOID), _P(_SIZE),
    _P(ctypes.c_bool), _VOID,
)  # fmt: skip
_ENUM_COUNT = _c("wasmtime_component_enum_type_names_count", _SIZE, _VOID)
_ENUM_NAME = _c("wasmtime_component_enum_type_names_nth", ctypes.c_bool, _VOID, _SIZE, _P(_VOID), _P(_SIZE))
_FLAGS_COUNT = _c("wasmtime_component_flags_type_names_count", _SIZE, _VOID)
_FLAGS_NAME = _c("wasmtime_component_flags_type_names_nth", ctypes.c_bool, _VOID, _SIZE, _P(_VOID), _P(_SIZE))
_OPTION_TY = _c("wasmtime_component_option_type_ty", None, _VOID, _VOID)
_RESULT_OK = _c("wasmtime_component_result_type_ok", ctypes.c_bool, _VOID, _VOID)
_RESULT_ERR = _c("wasmtime_component_result_type_err", ctypes.c_bool, _VOID, _VOID)
_RESOURCE_TYPE_HOST = _c("wasmtime_component_resource_type_new_host", _VOID, ctypes.c_uint32)
_RESOURCE_TYPE_EQUAL = _c("wasmtime_component_resource_type_equal", ctypes.c_bool, _VOID, _VOID)
_RESOURCE_TYPE_DELETE = _c("wasmtime_component_resource_type_delete", None, _VOID)
_HOST_NEW = _c("wasmtime_component_resource_host_new", _VOID, ctypes.c_bool, ctypes.c_uint32, ctypes.c_uint32)
_HOST_REP = _c("wasmtime_component_resource_host_rep", ctypes.c_uint32, _VOID)
_HOST_TYPE = _c("wasmtime_component_resource_host_type", ctypes.c_uint32, _VOID)
_HOST_DELETE = _c("wasmtime_component_resource_host_delete", None, _VOID)
_HOST_TO_ANY = _c("wasmtime_component_resource_host_to_any", _VOID, _VOID, _VOID, _P(_VOID))
_ANY_TO_HOST = _c("wasmtime_component_resource_any_to_host", _VOID, _VOID, _VOID, _P(_VOID))
_BYTES_NEW = _c("wasm_byte_vec_new", None, _VOID, _SIZE, _VOID)
_LIST_NEW = _c("wasmtime_component_vallist_new_uninit", None, _VOID, _SIZE)
_RECORD_NEW = _c("wasmtime_component_valrecord_new_uninit", None, _VOID, _SIZE)
_TUPLE_NEW = _c("wasmtime_component_valtuple_new_uninit", None, _VOID, _SIZE)
_FLAGS_NEW = _c("wasmtime_component_valflags_new_uninit", None, _VOID, _SIZE)
_VAL_NEW = _c("wasmtime_component_val_new", _VOID, _VOID)
_VAL_DELETE = _c("wasmtime_component_val_delete", None, _VOID)
_ERROR_NEW = _c("wasmtime_error_new", _VOID, _NAME)

# Value kinds (wasmtime/component/val.h) and type kinds (wasmtime/component/types/val.h).
(BOOL, S8, U8, S16, U16, S32, U32, S64, U64, F32, F64, CHAR, STRING, LIST, RECORD, TUPLE, VARIANT, ENUM, OPTION,
 RESULT, FLAGS, RESOURCE) = range(22)  # fmt: skip
_TYPE_KINDS = ["bool", "s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64", "f32", "f64", "char", "string", "list",
               "record", "tuple", "variant", "enum", "option", "result", "flags", "own", "borrow"]  # fmt: skip

_VAL_BYTES = 32  # sizeof(wasmtime_component_val_t); the payload starts at 8
_ENTRY_BYTES = 48  # sizeof(wasmtime_component_valrecord_entry_t): a name, then a val
_Val = ffi.wasmtime_component_val_t
_ValType = ffi.wasmtime_component_valtype_t
_U8_KIND = bytes([U8])
_INT_KIND = {"bool": BOOL, "s8": S8, "u8": U8, "s16": S16, "u16": U16, "s32": S32, "u32": U32, "s64": S64,
             "u64": U64, "char": CHAR, "f32": F32, "f64": F64}  # fmt: skip
_INT_FIELD: dict[str, Any] = {
    "s8": ctypes.c_int8, "u8": ctypes.c_uint8, "s16": ctypes.c_int16, "u16": ctypes.c_uint16, "s32": ctypes.c_int32,
    "u32": ctypes.c_uint32, "s64": ctypes.c_int64, "u64": ctypes.c_uint64, "char": ctypes.c_uint32,
    "bool": ctypes.c_bool, "f32": ctypes.c_float, "f64": ctypes.c_double,
}  # fmt: skip
_WORD = ctypes.c_size_t


@attrs.frozen
class Ok:
    """The ``ok`` case of a WIT ``result`` (``value`` is None when the case has no payload)."""

    value: Any = None


@attrs.frozen
class Err:
    """The ``error`` case of a WIT ``result``."""

    value: Any = None


class HostState(Protocol):
    """What a store's host functions run against: the per-instance state, which owns the
    host resources' reps and is told when the guest drops one."""

    def drop_resource(self, rep: int) -> None: ...


#: Reads a value at an address (context pointer, address) -> Python value.
Lift = Callable[[int, int], Any]
#: Writes a Python value at an address, allocating through Wasmtime (context, address, value).
Lower = Callable[[int, int, Any], None]


# --- converters, built once per type ------------------------------------------------------


class _Types:
    """Builds converters from Wasmtime's type descriptions, knowing which host resource
    type ids the linker defined (an ``own``/``borrow`` of another type cannot be converted)."""

    def __init__(self, resources: dict[int, int]) -> None:
        self._resources = resources  # type id -> wasmtime_component_resource_type_t*

    def resource_id(self, ty: int) -> int:
        for rid, known in self._resources.items():
            if _RESOURCE_TYPE_EQUAL(known, ty):
                return rid
        raise TypeError("a guest-defined resource cannot cross into the host")

    def converters(self, vt: _ValType) -> tuple[Lift, Lower]:
        kind = _TYPE_KINDS[vt.kind] if vt.kind < len(_TYPE_KINDS) else f"kind {vt.kind}"
        build = getattr(self, f"_{kind}", None)
        if build is not None:
            result: tuple[Lift, Lower] = build(ctypes.cast(ctypes.pointer(vt.of), _P(_VOID))[0] or 0)
            return result
        if kind in _INT_KIND:
            return _scalar(kind)
        raise TypeError(f"WIT type {kind} is not supported by wasmhost's component binding")

    def _child(self, getter: Callable[[Any, Any], Any], ptr: int) -> tuple[Lift, Lower]:
        """Converters of a contained type, read with ``getter(ptr, out_valtype)``."""
        vt = _ValType()
        getter(ptr, ctypes.byref(vt))
        try:
            return self.converters(vt)
        finally:
            _VALTYPE_DELETE(ctypes.byref(vt))

    def _string(self, _ptr: int) -> tuple[Lift, Lower]:
        return _lift_string, _lower_string

    def _list(self, ptr: int) -> tuple[Lift, Lower]:
        vt = _ValType()
        _LIST_ELEMENT(ptr, ctypes.byref(vt))
        try:
            if vt.kind == _TYPE_KINDS.index("u8"):
                return _lift_bytes, _lower_bytes
            item_lift, item_lower = self.converters(vt)
        finally:
            _VALTYPE_DELETE(ctypes.byref(vt))
        return _sequence(LIST, _LIST_NEW, item_lift, item_lower)

    def _tuple(self, ptr: int) -> tuple[Lift, Lower]:
        items = [self._nth(_TUPLE_NTH, ptr, i) for i in range(_TUPLE_COUNT(ptr))]
        return _fixed(TUPLE, _TUPLE_NEW, _VAL_BYTES, 0, items)

    def _record(self, ptr: int) -> tuple[Lift, Lower]:
        names, items = [], []
        for i in range(_RECORD_COUNT(ptr)):
            vt = _ValType()
            name = _named(_RECORD_FIELD, ptr, i, vt)
            names.append(name.encode())
            try:
                items.append(self.converters(vt))
            finally:
                _VALTYPE_DELETE(ctypes.byref(vt))
        lift, lower_values = _fixed(RECORD, _RECORD_NEW, _ENTRY_BYTES, 16, items)

        def lower(ctx: int, at: int, value: Any) -> None:
            lower_values(ctx, at, value)
            data = _WORD.from_address(at + 16).value
            for i, name in enumerate(names):
                _BYTES_NEW(data + i * _ENTRY_BYTES, len(name), name)

        return lift, lower

    def _nth(self, getter: Callable[..., Any], ptr: int, i: int) -> tuple[Lift, Lower]:
        vt = _ValType()
        getter(ptr, i, ctypes.byref(vt))
        try:
            return self.converters(vt)
        finally:
            _VALTYPE_DELETE(ctypes.byref(vt))

    def _variant(self, ptr: int) -> tuple[Lift, Lower]:
        cases: dict[str, tuple[bytes, tuple[Lift, Lower] | None]] = {}
        for i in range(_VARIANT_COUNT(ptr)):
            vt = _ValType()
            has = ctypes.c_bool()
            name = _named(_VARIANT_CASE, ptr, i, ctypes.byref(has), vt)
            try:
                cases[name] = (name.encode(), self.converters(vt) if has.value else None)
            finally:
                if has.value:
                    _VALTYPE_DELETE(ctypes.byref(vt))
        by_bytes = {encoded: (name, conv) for name, (encoded, conv) in cases.items()}

        def lift(ctx: int, at: int) -> Any:
            name, conv = by_bytes[_read_name(at + 8)]
            payload = _WORD.from_address(at + 24).value
            return (name, conv[0](ctx, payload) if conv is not None and payload else None)

        def lower(ctx: int, at: int, value: Any) -> None:
            name, payload = (value, None) if isinstance(value, str) else value
            encoded, conv = cases[name]
            _BYTES_NEW(at + 8, len(encoded), encoded)
            _WORD.from_address(at + 24).value = _boxed(ctx, conv, payload) if conv is not None else 0
            ctypes.c_uint8.from_address(at).value = VARIANT

        return lift, lower

    def _enum(self, ptr: int) -> tuple[Lift, Lower]:
        names = [_named(_ENUM_NAME, ptr, i) for i in range(_ENUM_COUNT(ptr))]
        by_bytes = {name.encode(): name for name in names}

        def lift(_ctx: int, at: int) -> Any:
            return by_bytes[_read_name(at + 8)]

        def lower(_ctx: int, at: int, value: Any) -> None:
            if value not in names:
                raise ValueError(f"{value!r} is not one of the enum's cases {names}")
            encoded = value.encode()
            _BYTES_NEW(at + 8, len(encoded), encoded)
            ctypes.c_uint8.from_address(at).value = ENUM

        return lift, lower

    def _flags(self, ptr: int) -> tuple[Lift, Lower]:
        names = [_named(_FLAGS_NAME, ptr, i) for i in range(_FLAGS_COUNT(ptr))]

        def lift(_ctx: int, at: int) -> Any:
            size, data = _WORD.from_address(at + 8).value, _WORD.from_address(at + 16).value
            return frozenset(_read_name(data + 16 * i).decode() for i in range(size))

        def lower(_ctx: int, at: int, value: Any) -> None:
            chosen = [name.encode() for name in names if name in value]
            _FLAGS_NEW(at + 8, len(chosen))
            data = _WORD.from_address(at + 16).value
            for i, name in enumerate(chosen):
                _BYTES_NEW(data + 16 * i, len(name), name)
            ctypes.c_uint8.from_address(at).value = FLAGS

        return lift, lower

    def _option(self, ptr: int) -> tuple[Lift, Lower]:
        vt = _ValType()
        _OPTION_TY(ptr, ctypes.byref(vt))
        try:
            if vt.kind == _TYPE_KINDS.index("option"):
                raise TypeError("option<option<T>> is not supported by wasmhost's component binding")
            inner = self.converters(vt)
        finally:
            _VALTYPE_DELETE(ctypes.byref(vt))

        def lift(ctx: int, at: int) -> Any:
            payload = _WORD.from_address(at + 8).value
            return inner[0](ctx, payload) if payload else None

        def lower(ctx: int, at: int, value: Any) -> None:
            _WORD.from_address(at + 8).value = 0 if value is None else _boxed(ctx, inner, value)
            ctypes.c_uint8.from_address(at).value = OPTION

        return lift, lower

    def _result(self, ptr: int) -> tuple[Lift, Lower]:
        ok = self._maybe(_RESULT_OK, ptr)
        err = self._maybe(_RESULT_ERR, ptr)

        def lift(ctx: int, at: int) -> Any:
            is_ok = ctypes.c_bool.from_address(at + 8).value
            conv = ok if is_ok else err
            payload = _WORD.from_address(at + 16).value
            value = conv[0](ctx, payload) if conv is not None and payload else None
            return Ok(value) if is_ok else Err(value)

        def lower(ctx: int, at: int, value: Any) -> None:
            if isinstance(value, Ok):
                conv, is_ok = ok, True
            elif isinstance(value, Err):
                conv, is_ok = err, False
            else:
                raise TypeError(f"a WIT result must be Ok(...) or Err(...), not {value!r}")
            ctypes.c_bool.from_address(at + 8).value = is_ok
            _WORD.from_address(at + 16).value = _boxed(ctx, conv, value.value) if conv is not None else 0
            ctypes.c_uint8.from_address(at).value = RESULT

        return lift, lower

    def _maybe(self, getter: Callable[..., Any], ptr: int) -> tuple[Lift, Lower] | None:
        vt = _ValType()
        if not getter(ptr, ctypes.byref(vt)):
            return None
        try:
            return self.converters(vt)
        finally:
            _VALTYPE_DELETE(ctypes.byref(vt))

    def _own(self, ptr: int) -> tuple[Lift, Lower]:
        return self._resource(ptr, owned=True)

    def _borrow(self, ptr: int) -> tuple[Lift, Lower]:
        return self._resource(ptr, owned=False)

    def _resource(self, ptr: int, owned: bool) -> tuple[Lift, Lower]:
        rid = self.resource_id(ptr)

        def lift(ctx: int, at: int) -> Any:
            """The one place a resource from the guest is released: converted to a host
            handle (which ends a borrow, or moves an own to the host) and read."""
            host = _VOID()
            _check(_ANY_TO_HOST(ctx, _WORD.from_address(at + 8).value, ctypes.byref(host)))
            try:
                if _HOST_TYPE(host) != rid:
                    raise TypeError("a resource of another type was passed")
                return _HOST_REP(host)
            finally:
                _HOST_DELETE(host)

        def lower(ctx: int, at: int, rep: Any) -> None:
            host = _HOST_NEW(owned, rep, rid)
            out = _VOID()
            try:
                _check(_HOST_TO_ANY(ctx, host, ctypes.byref(out)))
            finally:
                _HOST_DELETE(host)
            _WORD.from_address(at + 8).value = out.value or 0
            ctypes.c_uint8.from_address(at).value = RESOURCE

        return lift, lower


def _scalar(kind: str) -> tuple[Lift, Lower]:
    field, code = _INT_FIELD[kind], _INT_KIND[kind]

    if kind == "char":

        def lift(_ctx: int, at: int) -> Any:
            return chr(field.from_address(at + 8).value)

        def lower(_ctx: int, at: int, value: Any) -> None:
            field.from_address(at + 8).value = ord(value)
            ctypes.c_uint8.from_address(at).value = code

        return lift, lower

    def lift_scalar(_ctx: int, at: int) -> Any:
        return field.from_address(at + 8).value

    def lower_scalar(_ctx: int, at: int, value: Any) -> None:
        field.from_address(at + 8).value = value
        ctypes.c_uint8.from_address(at).value = code

    return lift_scalar, lower_scalar


def _read_name(at: int) -> bytes:
    """A ``wasm_name_t`` (size, data) at ``at``."""
    size = _WORD.from_address(at).value
    return ctypes.string_at(_WORD.from_address(at + 8).value, size) if size else b""


def _lift_string(_ctx: int, at: int) -> str:
    return _read_name(at + 8).decode()


def _lower_string(_ctx: int, at: int, value: str) -> None:
    data = value.encode()
    _BYTES_NEW(at + 8, len(data), data)
    ctypes.c_uint8.from_address(at).value = STRING


class _Scratch(threading.local):
    """A reusable buffer of u8 vals (kind set) per thread, where ``list<u8>`` values are built
    before one copy into Wasmtime's: big fresh allocations cost more in page faults than the copy."""

    def __init__(self) -> None:
        self.vals = bytearray()

    def sized(self, count: int) -> bytearray:
        if len(self.vals) < count * _VAL_BYTES:
            self.vals = bytearray((_U8_KIND + bytes(_VAL_BYTES - 1)) * count)
        return self.vals


_SCRATCH = _Scratch()


def _lift_bytes(_ctx: int, at: int) -> bytes:
    """``list<u8>``: every byte is a 32-byte val with the byte at offset 8, read with one
    strided slice of Wasmtime's buffer (a ``c_char`` array slices into ``bytes`` in C)."""
    size = _WORD.from_address(at + 8).value
    if not size:
        return b""
    length = size * _VAL_BYTES
    vals = (ctypes.c_char * length).from_address(_WORD.from_address(at + 16).value)
    return cast(bytes, vals[8:length:_VAL_BYTES])  # typeshed says list[bytes]; c_char slices are bytes


def _lower_bytes(_ctx: int, at: int, value: bytes) -> None:
    size = len(value)
    _LIST_NEW(at + 8, size)
    if size:
        scratch = _SCRATCH.sized(size)
        length = size * _VAL_BYTES
        scratch[8:length:_VAL_BYTES] = value
        ctypes.memmove(_WORD.from_address(at + 16).value, (ctypes.c_char * length).from_buffer(scratch), length)
    ctypes.c_uint8.from_address(at).value = LIST


def _sequence(kind: int, new: Any, item_lift: Lift, item_lower: Lower) -> tuple[Lift, Lower]:
    def lift(ctx: int, at: int) -> list[Any]:
        size, data = _WORD.from_address(at + 8).value, _WORD.from_address(at + 16).value
        return [item_lift(ctx, data + i * _VAL_BYTES) for i in range(size)]

    def lower(ctx: int, at: int, value: Iterable[Any]) -> None:
        items = list(value)
        new(at + 8, len(items))
        data = _WORD.from_address(at + 16).value
        ctypes.c_uint8.from_address(at).value = kind  # owns its items from here, even if one fails
        for i, item in enumerate(items):
            item_lower(ctx, data + i * _VAL_BYTES, item)

    return lift, lower


def _fixed(kind: int, new: Any, stride: int, offset: int, items: list[tuple[Lift, Lower]]) -> tuple[Lift, Lower]:
    """A record (entries of ``stride`` bytes, the val at ``offset``) or a tuple, as a Python tuple."""
    count = len(items)

    def lift(ctx: int, at: int) -> tuple[Any, ...]:
        data = _WORD.from_address(at + 16).value
        return tuple(conv[0](ctx, data + i * stride + offset) for i, conv in enumerate(items))

    def lower(ctx: int, at: int, value: Any) -> None:
        if len(value) != count:
            raise ValueError(f"expected {count} fields, got {len(value)}")
        new(at + 8, count)
        data = _WORD.from_address(at + 16).value
        ctypes.c_uint8.from_address(at).value = kind
        for i, (conv, item) in enumerate(zip(items, value, strict=True)):
            conv[1](ctx, data + i * stride + offset, item)

    return lift, lower


def _boxed(ctx: int, conv: tuple[Lift, Lower], value: Any) -> int:
    """A payload on Wasmtime's heap (option, result and variant payloads are pointers)."""
    empty = _Val()
    box: int = _VAL_NEW(ctypes.byref(empty))
    conv[1](ctx, box, value)
    return box


def _named(getter: Callable[..., Any], ptr: int, i: int, *out: Any) -> str:
    name, size = _VOID(), _SIZE()
    extra = [ctypes.byref(o) if isinstance(o, ctypes.Structure) else o for o in out]
    if not getter(ptr, i, ctypes.byref(name), ctypes.byref(size), *extra):
        raise IndexError(i)
    return ctypes.string_at(name.value or 0, size.value).decode()


def _check(err: int | None) -> None:
    if err:
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _P(ffi.wasmtime_error_t)))


def _error(text: str) -> int:
    return int(_ERROR_NEW(text.encode()) or 0)


@attrs.frozen
class Signature:
    """A component function's converters: one per parameter, and the result's (if any)."""

    params: tuple[Lift, ...]
    lower_params: tuple[Lower, ...]
    result: tuple[Lift, Lower] | None

    @classmethod
    def of(cls, functype: int, types: _Types) -> Signature:
        lifts, lowers = [], []
        for i in range(_FUNC_TYPE_PARAMS(functype)):
            vt = _ValType()
            _named(_FUNC_TYPE_PARAM, functype, i, vt)
            try:
                lift, lower = types.converters(vt)
            finally:
                _VALTYPE_DELETE(ctypes.byref(vt))
            lifts.append(lift)
            lowers.append(lower)
        vt = _ValType()
        result = None
        if _FUNC_TYPE_RESULT(functype, ctypes.byref(vt)):
            try:
                result = types.converters(vt)
            finally:
                _VALTYPE_DELETE(ctypes.byref(vt))
        return cls(tuple(lifts), tuple(lowers), result)


# --- the linker ---------------------------------------------------------------------------

#: A host function: called with the store's ``HostState`` and the converted arguments; returns
#: the result's value (or None). A coroutine function suspends the guest while it waits.
HostFunction = Callable[..., Any]


class Linker:
    """Host functions and resources by interface name, shared by every instance of a component.

    Host functions find their instance's state by the store context they are called with
    (registered by ``instantiate``, removed by ``Instance.close``), so one linker serves many
    concurrent instances.
    """

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._ptr = _LINKER_NEW(ctypes.cast(engine.ptr(), _VOID))
        self._resources: dict[int, int] = {}  # type id -> resource type
        self._types = _Types(self._resources)
        self._states: dict[int, tuple[Store, HostState]] = {}
        self._keep: list[Any] = []
        self.counts: dict[str, list[int]] = {}

    def _define(self, interface: str, add: Callable[[int], int | None]) -> None:
        """Run ``add(linker_instance)`` on the named instance ("": the root). Wasmtime's linker instances borrow
        the linker, so each is opened (root, then the child) and deleted right after."""
        root = _LINKER_ROOT(self._ptr)
        try:
            if not interface:  # a function or resource the component imports by bare name
                _check(add(root))
                return
            child = _VOID()
            name = interface.encode()
            _check(_ADD_INSTANCE(root, name, len(name), ctypes.byref(child)))
            try:
                _check(add(child.value or 0))
            finally:
                _LINKER_INSTANCE_DELETE(child)
        finally:
            _LINKER_INSTANCE_DELETE(root)

    def resource(self, interface: str, name: str) -> int:
        """Define a host resource type; returns its id. A guest dropping one calls
        ``HostState.drop_resource(rep)``."""
        rid = len(self._resources) + 1
        ty = _RESOURCE_TYPE_HOST(rid)
        self._resources[rid] = ty
        states = self._states

        def destructor(_env: int, ctx: int, rep: int) -> int:
            try:
                states[ctx][1].drop_resource(rep)
            except BaseException as exc:  # noqa: BLE001 - becomes the guest's trap
                return _error(f"dropping {interface} {name}: {type(exc).__name__}: {exc}")
            return 0

        dtor = _DTOR(destructor)
        self._keep.append(dtor)
        encoded = name.encode()
        self._define(interface, lambda li: _ADD_RESOURCE(li, encoded, len(encoded), ty, dtor, None, _NO_FINALIZER))
        return rid

    def function(self, interface: str, name: str, func: HostFunction) -> None:
        """Define ``interface#name``; converters are built from its type on the first call."""
        label = f"{interface}#{name}"
        count = self.counts.setdefault(label, [0])
        states, types = self._states, self._types
        sig: list[Signature] = []

        def signature(functype: int) -> Signature:
            if not sig:
                sig.append(Signature.of(functype, types))
            return sig[0]

        if inspect.iscoroutinefunction(func):

            def run_async(
                _env: int, ctx: int, functype: int, args: int, nargs: int, results: int, _nres: int, err: Any,
                cont: Any,
            ) -> None:  # fmt: skip
                count[0] += 1
                store, state = states[ctx]

                def finish(value: Any) -> None:
                    if s.result is not None:
                        s.result[1](ctx, results, value)

                def fail(exc: BaseException) -> None:
                    err[0] = _failed(store, label, exc)

                try:
                    s = signature(functype)
                    coro = func(state, *[lift(ctx, args + i * _VAL_BYTES) for i, lift in enumerate(s.params)])
                except BaseException as exc:  # noqa: BLE001 - every error must become a trap
                    cont[0].callback = _ready
                    fail(exc)
                    return
                start_host_call(store, coro, finish, fail, cont[0])

            callback: Any = _ASYNC_CB(run_async)
            add = _ADD_FUNC_ASYNC
        else:

            def run(_env: int, ctx: int, functype: int, args: int, nargs: int, results: int, _nres: int) -> int:
                count[0] += 1
                store, state = states[ctx]
                try:
                    s = signature(functype)
                    value = func(state, *[lift(ctx, args + i * _VAL_BYTES) for i, lift in enumerate(s.params)])
                    if s.result is not None:
                        s.result[1](ctx, results, value)
                except BaseException as exc:  # noqa: BLE001 - every error must become a trap
                    return _failed(store, label, exc)
                return 0

            callback = _SYNC_CB(run)
            add = _ADD_FUNC
        self._keep.append(callback)
        encoded = name.encode()
        self._define(interface, lambda li: add(li, encoded, len(encoded), callback, None, _NO_FINALIZER))

    async def instantiate(self, store: Store, component: wc.Component, state: HostState) -> Instance:
        """Instantiate ``component`` in ``store`` on a fiber driven by the running loop."""
        ctx = store._ctx.value or 0
        self._states[ctx] = (store, state)
        out = ffi.wasmtime_component_instance_t()
        err = _VOID()
        future = _INSTANTIATE(self._ptr, ctx, ctypes.cast(component.ptr(), _VOID), ctypes.byref(out),
                              ctypes.byref(err))  # fmt: skip
        try:
            await store._drive(future)
            _raise(store, err)
        except BaseException:
            del self._states[ctx]
            raise
        finally:
            _DELETE_FUTURE(future)
        return Instance(self, store, out)

    def unbind(self, store: Store) -> None:
        self._states.pop(store._ctx.value or 0, None)

    def close(self) -> None:
        if self._ptr:
            _LINKER_DELETE(self._ptr)
            for ty in self._resources.values():
                _RESOURCE_TYPE_DELETE(ty)
            self._ptr = 0


def _failed(store: Store, label: str, exc: BaseException) -> int:
    """A host function failed: the exception is kept (``Store.pending``) and the guest traps."""
    store.pending = exc
    return _error(f"host function {label} raised {type(exc).__name__}: {exc}")


def _raise(store: Store, err: Any) -> None:
    if err.value:
        error = wasmtime.WasmtimeError._from_ptr(ctypes.cast(err.value, _P(ffi.wasmtime_error_t)))
        pending = store.take_pending()
        if pending is not None:
            raise pending from error
        raise error


class ExportIndex:
    """An export's index in a component, found once (``["wasi:http/incoming-handler@0.2.0", "handle"]``)."""

    def __init__(self, component: wc.Component, path: list[str]) -> None:
        parent: int | None = None
        found: list[int] = []
        for name in path:
            encoded = name.encode()
            idx = _EXPORT_INDEX(ctypes.cast(component.ptr(), _VOID), parent, encoded, len(encoded))
            if not idx:
                for owned in found:
                    _EXPORT_INDEX_DELETE(owned)
                raise LookupError(f"the component does not export {'#'.join(path)}")
            found.append(idx)
            parent = idx
        self._found = found
        self.ptr = found[-1]
        #: The function's converters, built on its first call (the same for every instance).
        self.signature: Signature | None = None

    def close(self) -> None:
        for idx in self._found:
            _EXPORT_INDEX_DELETE(idx)
        self._found = []


class Instance:
    """A component instance in its store; ``call`` runs an export on a fiber."""

    def __init__(self, linker: Linker, store: Store, raw: Any) -> None:
        self.linker = linker
        self.store = store
        self._raw = raw

    async def call(self, export: ExportIndex, *args: Any) -> Any:
        func = ffi.wasmtime_component_func_t()
        ctx = self.store._ctx.value or 0
        if not _GET_FUNC(ctypes.byref(self._raw), ctx, export.ptr, ctypes.byref(func)):
            raise LookupError("the export is not a function")
        sig = export.signature
        if sig is None:
            functype = ffi.wasmtime_component_func_type(ctypes.byref(func), self.store.context)
            try:
                sig = export.signature = Signature.of(ctypes.cast(functype, _VOID).value or 0, self.linker._types)
            finally:
                ffi.wasmtime_component_func_type_delete(functype)
        argv = (_Val * max(1, len(args)))()
        base = ctypes.addressof(argv)
        lowered = 0
        try:
            for i, (lower, value) in enumerate(zip(sig.lower_params, args, strict=True)):
                lower(ctx, base + i * _VAL_BYTES, value)
                lowered += 1
            out = (_Val * 1)()
            err = _VOID()
            future = _CALL(ctypes.byref(func), ctx, base, len(args), ctypes.addressof(out), int(sig.result is not None),
                           ctypes.byref(err))  # fmt: skip
            try:
                await self.store._drive(future)
            finally:
                _DELETE_FUTURE(future)
            _raise(self.store, err)
            if sig.result is None:
                return None
            try:
                return sig.result[0](ctx, ctypes.addressof(out))
            finally:
                _VAL_DELETE(ctypes.byref(out))
        finally:
            for i in range(lowered):
                _VAL_DELETE(base + i * _VAL_BYTES)

    def close(self) -> None:
        self.linker.unbind(self.store)
        self.store.close()


# --- compiling and describing components (wasmtime-py's component API) --------------------------

#: wasmtime-py's component item types, by the kind wasmhost reports.
_KINDS: tuple[tuple[type, str], ...] = (
    (wc.ComponentInstanceType, "instance"),
    (wc.FuncType, "func"),
    (wc.ResourceType, "resource"),
    (wc.ModuleType, "module"),
    (wc.ComponentType, "component"),
    (wc.ValType, "type"),
)


def compile_component(wasm: bytes, fuel: bool, pooled: bool = False) -> wc.Component:
    """Components are compiled by the same engines as core modules (``core.engine``); the
    allocator is no part of compiled code, so every engine shares the cache fingerprint."""
    return wc.Component(engine(fuel, pooled), wasm)


def serialize(compiled: wc.Component) -> bytes:
    return bytes(compiled.serialize())


def deserialize(data: bytes, fuel: bool, pooled: bool = False) -> wc.Component:
    return wc.Component.deserialize(engine(fuel, pooled), data)


def imports_of(compiled: wc.Component, fuel: bool) -> list[Import]:
    """One entry per item a component imports: ``module`` is the interface (``wasi:io/poll@0.2.0``),
    ``name`` the function, resource or type inside it; a bare imported function has module ``""``."""
    return _items(compiled.type.imports(engine(fuel)), fuel)


def exports_of(compiled: wc.Component, fuel: bool) -> list[Import]:
    """The same for exports: what an exported interface offers (``handle`` in ``wasi:http/incoming-handler``)."""
    return _items(compiled.type.exports(engine(fuel)), fuel)


def _items(externs: dict[str, Any], fuel: bool) -> list[Import]:
    found = []
    for name, extern in externs.items():
        ty = extern.ty
        kind = _kind(ty)
        if kind == "instance":
            found += [Import(name, item, _kind(inner.ty), None) for item, inner in ty.exports(engine(fuel)).items()]
        else:
            found.append(Import("", name, kind, None))
    return found


def _kind(ty: object) -> str:
    return next((kind for cls, kind in _KINDS if isinstance(ty, cls)), "other")
