"""Match a module's ``wasi_snapshot_preview1`` imports to host functions, by name and type.

Dispatch is by the imported function type, as WasmEdge does: one import name may have
several implementations (e.g. ``sock_accept`` with 2 or 3 parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .._native import Import, Signature
from .abi import WasiError

MODULE = "wasi_snapshot_preview1"

#: (import name, parameter types) -> function returning None or raising WasiError.
Table = dict[tuple[str, str], Callable[..., None]]


def table_of(provider: object, entries: Iterable[tuple[str, str, str]]) -> Table:
    """``(import name, params, method name)`` entries bound to ``provider``'s methods."""
    return {(name, params): getattr(provider, method) for name, params, method in entries}


def errno_result(func: Callable[..., None]) -> Callable[..., int]:
    """Adapt a function that raises ``WasiError`` to the ABI's errno return value."""

    def call(*args: int) -> int:
        try:
            func(*args)
        except WasiError as exc:
            return int(exc.errno)
        return 0

    call.__name__ = func.__name__
    return call


class UnknownImportCalled(Exception):
    """A guest called an import that ``trap_unknown_imports`` stubbed out."""


def trapping(imports: Iterable[Import]) -> dict[tuple[str, str], tuple[Callable[..., int], Signature]]:
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
) -> tuple[dict[tuple[str, str], tuple[Callable[..., int], Signature]], list[Import]]:
    """The host functions to define for ``imports``, and the imports nothing provides."""
    funcs: dict[tuple[str, str], tuple[Callable[..., int], Signature]] = {}
    missing = []
    for imp in imports:
        sig = imp.signature
        found = None
        if imp.module == MODULE and sig is not None and sig.results == ("" if imp.name == "proc_exit" else "i"):
            found = table.get((imp.name, sig.params))
        if found is None or sig is None:
            missing.append(imp)
            continue
        funcs[(imp.module, imp.name)] = (errno_result(found), sig)
    return funcs, missing
