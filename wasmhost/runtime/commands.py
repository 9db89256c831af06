"""`wasmhost runtime ...`: the same runtime as the `wasmhost-runtime` script."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runtime = subparsers.add_parser(
        "runtime",
        help="the OCI runtime (runc's command line) that containerd and Podman call",
        description="Same as wasmhost-runtime: `wasmhost runtime [GLOBAL FLAGS] create|start|state|...`.",
        # Every argument is the runtime's, flags included: none is an option of this parser.
        prefix_chars="+",
        add_help=False,
    )
    runtime.add_argument("args", nargs=argparse.REMAINDER)
    runtime.set_defaults(handler=_runtime)


def _runtime(ns: argparse.Namespace) -> int:
    from .cli import main

    return main(ns.args)
