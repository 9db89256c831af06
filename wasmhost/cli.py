"""Command line: argument parsing only; the work is done by the library.

Exit codes: the guest's own exit code; 1 when the guest traps or a registry fails; 2 for bad input (missing
or invalid module, bad flag, unknown imports); 124 when ``--timeout`` ends the guest;
130 / 143 when SIGINT / SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

from . import __version__, oci, server
from .errors import ConfigError, GuestTrap, Timeout, WasmhostError
from .host import Host, Limits, Preopen
from .instance import Instance
from .module import Module
from .net.policy import Network, PortMapping, Rule
from .oci import commands as oci_commands

EXIT_FAILURE = 1  # the guest trapped, or a registry/network failed
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
    run.add_argument("--bundle", metavar="DIR", help="run the OCI runtime bundle in DIR (config.json + rootfs)")
    run.add_argument("module", nargs="?", help="the .wasm (or .wat) file, or oci://REGISTRY/REPO:TAG")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the guest (after an optional --)")
    run.set_defaults(handler=_run, default_log_level="warning")
    serve = commands.add_parser(
        "serve",
        help="serve a socket-server module (default: the bundled demo)",
        description="Serve a socket server guest.",
    )
    add_guest_options(serve)
    serve.add_argument("--host-call-stats", action="store_true", help="print per-function host call counts at exit")
    serve.add_argument("module", nargs="?", help="the .wasm file or oci:// reference (default: the bundled demo)")
    serve.set_defaults(handler=_serve, default_log_level="info")
    inspect = commands.add_parser(
        "inspect", help="show a module's kind, imports and exports", description="Describe a module without running it."
    )
    inspect.add_argument("module", help="the .wasm (or .wat) file")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect)
    oci_commands.register(commands)
    return parser


def add_guest_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that starts a guest shares."""
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="host log detail")
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
    parser.add_argument(
        "--idle-backoff",
        type=_non_negative_float,
        default=Network().idle_backoff,
        metavar="S",
        help="longest delay before re-reporting readiness the guest ignored (0: strictly level-triggered)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive_float(text: str) -> float:
    value = _number(text)
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
        idle_backoff=ns.idle_backoff,
    )
    return Host(
        args=args,
        env=[Host.parse_env(e) for e in ns.env],
        preopens=[Preopen.parse(d) for d in ns.dir],
        limits=limits,
        network=network,
        trap_unknown_imports=ns.trap_unknown_imports,
    )


def _guest(ns: argparse.Namespace, args: list[str], source: str | None) -> tuple[Module, Host]:
    """The module and host a command line names: a file, an ``oci://`` reference or a bundle."""
    host = host_from_args(ns, args)
    if getattr(ns, "bundle", None):
        bundle = oci.read_bundle(Path(ns.bundle))
        mounts = [Preopen(m.guest, m.host, m.read_only) for m in bundle.mounts]
        return Module(bundle.module, name=bundle.args[0]), attrs.evolve(
            host, args=[*bundle.args[1:], *args], env=[*bundle.env, *host.env], preopens=[*mounts, *host.preopens]
        )
    if source is None:
        raise ConfigError("run: give a module (file or oci:// reference) or --bundle DIR")
    if source.startswith("oci://"):
        pulled = oci.pull(source, progress=sys.stderr.isatty())
        host = attrs.evolve(host, args=[*pulled.args[1:], *args], env=[*pulled.env, *host.env])
        return Module(pulled.path, name=source), host
    return Module(source), host


def _run(ns: argparse.Namespace) -> int:
    args: list[str] = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if ns.bundle and ns.module is not None:  # with --bundle every positional is a guest argument
        args, ns.module = [ns.module, *args], None
    module, host = _guest(ns, args, ns.module)
    with Instance(module, host) as instance:
        code, sig = server.run(instance)
    return _SIGNAL_EXIT[signal.Signals(sig)] if sig is not None else code


def _inspect(ns: argparse.Namespace) -> int:
    """Exit 0 when the module would link under wasmhost, 1 when imports are missing."""
    module = Module(ns.module)
    missing = [f"{i.module}::{i.name}" for i in module.unknown_imports()]
    imports: dict[str, list[str]] = {}
    for imp in module.imports:
        imports.setdefault(imp.module, []).append(imp.name)
    if ns.json:
        info = {"kind": module.kind.value, "size": len(module.wasm), "exports": module.exports}
        print(json.dumps({**info, "imports": imports, "unknown_imports": missing}, indent=2))
    else:
        print(f"{module.name}: {module.kind.value}, {len(module.wasm)} bytes")
        print("exports: " + ", ".join(f"{name} ({kind})" for name, kind in module.exports.items()))
        for source, names in imports.items():
            print(f"imports from {source} ({len(names)}): {', '.join(names)}")
        print(f"unknown imports: {', '.join(missing)}" if missing else "links with wasmhost: yes")
    return 1 if missing else 0


def _serve(ns: argparse.Namespace) -> int:
    if ns.module:
        module, host = _guest(ns, [], ns.module)
    else:
        module, host = Module(server.demo_module(), name="http-hello.wasm (demo)"), host_from_args(ns, [])
    with Instance(module, host) as instance:
        try:
            code, _sig = server.run(instance)
        finally:
            if ns.host_call_stats:
                counts = instance.host_calls()
                for name, n in sorted(counts.items(), key=lambda item: -item[1]):
                    print(f"host-calls {name} {n}", file=sys.stderr)
                print(f"host-calls total {sum(counts.values())}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    level = str(getattr(ns, "log_level", None) or getattr(ns, "default_log_level", "warning"))
    logging.basicConfig(level=level.upper(), format="wasmhost: %(message)s")
    try:
        code: int = ns.handler(ns)
        return code
    except Timeout as exc:
        _say(str(exc))
        return EXIT_TIMEOUT
    except oci.RegistryError as exc:
        _say(str(exc))
        return EXIT_FAILURE
    except GuestTrap as exc:
        _say(exc.details())
        return EXIT_FAILURE
    except WasmhostError as exc:
        _say(str(exc))
        return EXIT_USAGE


def _say(message: str) -> None:
    print(f"wasmhost: {message}", file=sys.stderr, flush=True)
