"""One component linker with all of wasmhost's WASI 0.2: every interface module's resources
and functions, defined at @0.2.0 (which also satisfies guests importing a later 0.2.x).

A guest links only if every function it imports exists, and componentize-py guests import
filesystem and sockets functions they may never call. Imported functions wasmhost does not
implement are defined anyway: in wasi:filesystem and wasi:sockets they return the interface's
"not provided" error (``unsupported`` / ``not-supported``), elsewhere they trap naming the
function.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NoReturn

from .._native.component import Err, Linker
from .._native.core import Import, engine
from . import cli, clocks, filesystem, http, io, outgoing, random, sockets
from .context import Wasi

MODULES = (io, clocks, random, cli, filesystem, sockets, http, outgoing)
_VERSION = re.compile(r"@0\.2\.\d+$")
_REFUSALS = {"wasi:filesystem/": filesystem.REFUSAL, "wasi:sockets/": sockets.REFUSAL}


def interface_name(imported: str) -> str:
    """The name wasmhost defines an imported interface under (any 0.2.x -> @0.2.0)."""
    return _VERSION.sub("@0.2.0", imported)


def _refusal(interface: str, name: str) -> Callable[..., Any]:
    case = next((case for prefix, case in _REFUSALS.items() if interface.startswith(prefix)), None)
    if case is not None:

        def refuse(_wasi: Wasi, *_args: Any) -> Err:
            return Err(case)

        return refuse

    def missing(_wasi: Wasi, *_args: Any) -> NoReturn:
        raise NotImplementedError(f"{interface}#{name} is not implemented by wasmhost")

    return missing


def unprovided(imports: list[Import]) -> list[Import]:
    """The imported functions wasmhost does not implement: the guest still links, and a
    call to one is refused (filesystem, sockets) or traps."""
    implemented = {key for module in MODULES for key in module.FUNCTIONS}
    return [
        item
        for item in imports
        if item.kind == "func" and item.module and (interface_name(item.module), item.name) not in implemented
    ]


def build_linker(imports: list[Import], fuel: bool = False, pooled: bool = False) -> Linker:
    """A linker for a component with these ``imports`` (``Module.imports``), for the engine
    ``core.engine(fuel, pooled)``."""
    linker = Linker(engine(fuel, pooled))
    for module in MODULES:
        for interface, name in module.RESOURCES:
            linker.resource(interface, name)
    defined: set[tuple[str, str]] = set()
    for module in MODULES:
        for (interface, name), func in module.FUNCTIONS.items():
            linker.function(interface, name, func)
            defined.add((interface, name))
    for item in imports:
        key = (interface_name(item.module), item.name)
        if item.kind == "func" and item.module and key not in defined:
            linker.function(*key, _refusal(*key))
            defined.add(key)
    return linker
