"""Match a module's ``wasi_snapshot_preview1`` imports to host functions, by name and type.

Dispatch is by the imported function type, as WasmEdge does: one import name may have
several implementations (e.g. ``sock_accept`` with 2 or 3 parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._native import Import, Signature
from .._native.sockio import Front
from .abi import WasiError

MODULE = "wasi_snapshot_preview1"

#: (import name, parameter types) -> function (or coroutine function) returning None on
#: success or raising WasiError, whose errno is then the result; or such a coroutine
#: function behind a C fast path.
Table = dict[tuple[str, str], Callable[..., Any] | Front]


def table_of(provider: object, entries: Iterable[tuple[str, str, str]]) -> Table:
    """``(import name, params, method name)`` entries bound to ``provider``'s methods."""
    return {(name, params): getattr(provider, method) for name, params, method in entries}


def errno_of(exc: BaseException) -> int | None:
    """A host function's ``WasiError`` is its result (the errno), not a failure: the store
    writes it for the guest (see ``_native.Store``'s ``error_result``)."""
    return int(exc.errno) if isinstance(exc, WasiError) else None


class UnknownImportCalled(Exception):
    """A guest called an import that ``trap_unknown_imports`` stubbed out."""


def trapping(imports: Iterable[Import]) -> dict[tuple[str, str], tuple[Callable[..., Any], Signature]]:
    """Functions for ``imports`` that trap with the import's name when called."""
    funcs = {}
    for imp in imports:
        if imp.signature is None:
            continue

        def call(*_args: int, name: str = f"{imp.module}::{imp.name}") -> int:
            raise UnknownImportCalled(f"guest called {name}, which this host does not provide")

        call.__name__ = imp.name
        funcs[(imp.module, imp.name)] = (call, imp.signature)
    return funcs


def unknown(imports: Iterable[Import], entries: Iterable[tuple[str, str, str]]) -> list[Import]:
    """The imports no entry provides (what ``link`` would report), without any provider."""
    return link(imports, {(name, params): _never_called for name, params, _ in entries})[1]


def _never_called(*_args: int) -> None:
    raise AssertionError("only used to check linking")


def link(
    imports: Iterable[Import], table: Table
) -> tuple[dict[tuple[str, str], tuple[Callable[..., Any] | Front, Signature]], list[Import]]:
    """The host functions to define for ``imports``, and the imports nothing provides."""
    funcs: dict[tuple[str, str], tuple[Callable[..., Any] | Front, Signature]] = {}
    missing = []
    for imp in imports:
        sig = imp.signature
        found = None
        if imp.module == MODULE and sig is not None and sig.results == ("" if imp.name == "proc_exit" else "i"):
            found = table.get((imp.name, sig.params))
        if found is None or sig is None:
            missing.append(imp)
            continue
        funcs[(imp.module, imp.name)] = (found, sig)
    return funcs, missing
