"""Package attributes imported on first use (PEP 562): importing a package costs only what it uses.

``import wasmhost`` or ``import wasmhost.cli`` must not pay for wasmtime, asyncio or the
registry client (oras, requests, urllib3) before a command needs them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def attribute_loader(package: str, sources: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``sources[name]`` is (submodule, attribute)."""

    def load(name: str) -> Any:
        try:
            module, attribute = sources[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module}"), attribute)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    return load


def names(module: str, *attributes: str) -> dict[str, tuple[str, str]]:
    """``sources`` entries for attributes exported under their own names."""
    return {attribute: (module, attribute) for attribute in attributes}
