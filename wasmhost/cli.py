"""Command line: argument parsing only; the work is done by the library.

Exit codes: the guest's own exit code; 1 when the guest traps; 2 for bad input (missing
or invalid module, bad flag, unknown imports); 124 when ``--timeout`` ends the guest;
130 / 143 when SIGINT / SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from . import __version__, server
from .errors import GuestTrap, Timeout, WasmhostError
from .host import Host, Limits, Preopen
from .instance import Instance
from .module import Module
from .net.policy import Network, PortMapping, Rule

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
    serve = commands.add_parser(
        "serve",
        help="serve a socket-server module (default: the bundled demo)",
        description="Serve a socket server guest.",
    )
    add_guest_options(serve)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("module", nargs="?", help="the .wasm module (default: the bundled http-hello demo)")
    serve.set_defaults(handler=_serve)
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
    parser.add_argument(
        "--trap-unknown-imports", action="store_true", help="start despite unknown imports; they trap if called"
    )
    parser.add_argument(
        "-p", "--publish", action="append", default=[], metavar="[IP:]HOST:GUEST", help="map a guest port"
    )
    parser.add_argument("--host", metavar="ADDR", help="bind listening sockets to ADDR instead of the guest's choice")
    parser.add_argument("--allow-outbound", action="append", default=[], metavar="SPEC", help="allow outbound traffic")


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
    network = Network(
        bind_address=ns.host,
        ports=[PortMapping.parse(p) for p in ns.publish],
        outbound=[rule for spec in ns.allow_outbound for rule in Rule.parse(spec)],
    )
    return Host(
        args=args,
        env=[Host.parse_env(e) for e in ns.env],
        preopens=[Preopen.parse(d) for d in ns.dir],
        limits=limits,
        network=network,
        trap_unknown_imports=ns.trap_unknown_imports,
    )


def _run(ns: argparse.Namespace) -> int:
    args: list[str] = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    with Instance(Module(ns.module), host_from_args(ns, args)) as instance:
        code, sig = server.run(instance)
    return _SIGNAL_EXIT[signal.Signals(sig)] if sig is not None else code


def _serve(ns: argparse.Namespace) -> int:
    logging.basicConfig(level=ns.log_level.upper(), format="wasmhost: %(message)s")
    module = Module(ns.module or server.demo_module(), name=None if ns.module else "http-hello.wasm (demo)")
    with Instance(module, host_from_args(ns, [])) as instance:
        code, _sig = server.run(instance)
    return code


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
