"""The one compiled part of wasmhost: wasmhost/_native/sockio.c, a plain shared library
that wasmhost/_native/sockio.py loads with ctypes (no Python API, so one build serves every
Python version). Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wasmhost._native._sockio",
            ["wasmhost/_native/sockio.c"],
            py_limited_api=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
        )
    ],
    # No Python API in it: one wheel per platform serves every Python from 3.10 on.
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
