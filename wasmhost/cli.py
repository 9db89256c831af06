"""Command line: argument parsing only; the work is done by the library.

Exit codes: the guest's own exit code; 1 when the guest traps; 2 for bad input (missing
or invalid module, bad flag, unknown imports); 124 when ``--timeout`` ends the guest;
130 / 143 when SIGINT / SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .errors import GuestTrap, Interrupted, Timeout, WasmhostError
from .host import Host, Limits, Preopen
from .instance import Instance
from .module import Module

EXIT_TRAP = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmhost", description="Run WebAssembly (WASI) workloads.")
    parser.add_argument("--version", action="version", version=f"wasmhost {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run", help="run a command module to completion", description="Run a WASI command module."
    )
    add_guest_options(run)
    run.add_argument("module", help="path to the .wasm (or .wat) module")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the guest (after an optional --)")
    run.set_defaults(handler=_run)
    return parser


def add_guest_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that starts a guest shares."""
    parser.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="GUEST:HOST",
        help="preopen a directory (PATH, GUEST:HOST or GUEST:HOST:readonly)",
    )
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="set a guest environment variable")
    parser.add_argument("--memory-limit", type=_positive_int, metavar="MiB", help="cap the guest's linear memory")
    parser.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="stop the guest after S seconds (exit 124)"
    )
    parser.add_argument("--fuel", type=_positive_int, metavar="N", help="stop the guest after N units of wasm fuel")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def host_from_args(ns: argparse.Namespace, args: list[str]) -> Host:
    limits = Limits(
        memory=ns.memory_limit * 1024 * 1024 if ns.memory_limit else None,
        timeout=ns.timeout,
        fuel=ns.fuel,
    )
    return Host(
        args=args,
        env=[Host.parse_env(e) for e in ns.env],
        preopens=[Preopen.parse(d) for d in ns.dir],
        limits=limits,
    )


def _run(ns: argparse.Namespace) -> int:
    args: list[str] = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    host = host_from_args(ns, args)
    module = Module(ns.module)
    with Instance(module, host) as instance:
        return run_until_signal(instance)


def run_until_signal(instance: Instance) -> int:
    """Run the guest on an asyncio loop; SIGINT/SIGTERM stop it."""
    received: list[int] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in _SIGNAL_EXIT:
            loop.add_signal_handler(sig, _on_signal, sig, received, instance)
        return await instance.run_async()

    try:
        return asyncio.run(main())
    except Interrupted:
        if received:
            return _SIGNAL_EXIT[signal.Signals(received[0])]
        raise


def _on_signal(sig: int, received: list[int], instance: Instance) -> None:
    received.append(sig)
    instance.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        code: int = ns.handler(ns)
        return code
    except Timeout as exc:
        _say(str(exc))
        return EXIT_TIMEOUT
    except GuestTrap as exc:
        if exc.stderr:
            sys.stderr.write(exc.stderr)
        _say(exc.details())
        return EXIT_TRAP
    except WasmhostError as exc:
        _say(str(exc))
        return EXIT_USAGE


def _say(message: str) -> None:
    print(f"wasmhost: {message}", file=sys.stderr, flush=True)
