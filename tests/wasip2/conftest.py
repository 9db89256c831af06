"""Fixtures for wasmhost's WASI 0.2: the wasi:http test components (built by components/build.sh),
each compiled once per session, and a front end serving a handler (from tests/http)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.http.conftest import component, component_dir, serve_handler, wasmtime_serve
from wasmhost import Module
from wasmhost.cache import CompileCache

__all__ = ["component", "component_dir", "http_module", "serve_handler", "wasmtime_serve"]


@pytest.fixture(scope="session")
def http_module(component: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Module]:
    """``http_module("hello")``: that component as a Module, compiled once per session (10-50 s each)."""
    cache = CompileCache(tmp_path_factory.mktemp("wasip2-cache"))
    loaded: dict[str, Module] = {}

    def load(name: str) -> Module:
        if name not in loaded:
            loaded[name] = Module(component(name), cache=cache)
        return loaded[name]

    return load
