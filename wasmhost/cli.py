"""Command line: argument parsing only; the work is done by the library.

Exit codes: the guest's own exit code; 1 when the guest traps or a registry fails; 2 for bad input (missing
or invalid module, bad flag, unknown imports); 124 when ``--timeout`` ends the guest;
130 / 143 when SIGINT / SIGTERM stop it.

Registry code (oras, requests) is imported only by the commands that use it, so that starting
a local module stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from . import __version__, logs, server
from .errors import ConfigError, GuestTrap, HostFailure, Timeout, WasmhostError
from .host import Host, Limits, Preopen
from .instance import Instance
from .k8s import commands as k8s_commands
from .module import GuestKind, Module
from .net import loop
from .net.policy import Network, PortMapping, Rule
from .oci import commands as oci_commands
from .oci.errors import RegistryError
from .runtime import commands as runtime_commands

if TYPE_CHECKING:
    from ._native import Import
    from .http import HttpLimits

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
    add_guest_source(run, "the .wasm (or .wat) file, or oci://REGISTRY/REPO:TAG")
    run.set_defaults(handler=_run, default_log_level="warning")
    serve = commands.add_parser(
        "serve",
        help="serve a socket-server module (default: the bundled demo)",
        description="Serve a socket server guest.",
    )
    add_guest_options(serve)
    serve.add_argument("--host-call-stats", action="store_true", help="print per-function host call counts at exit")
    serve.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="worker processes sharing the guest's ports (SO_REUSEPORT); 'auto': one per CPU (default 1)",
    )
    serve.add_argument(
        "--port",
        type=_port_number,
        default=8080,
        metavar="N",
        help="wasi:http components: the port to serve on (default 8080; 0: the OS picks); the address is --host's",
    )
    serve.add_argument(
        "--reuse-instances",
        type=_positive_int,
        default=1,
        metavar="N",
        help="wasi:http components: requests one instance may serve (default 1: a fresh instance per request)",
    )
    _add_http_limits(serve)
    serve.add_argument(
        "--graceful-timeout",
        type=_non_negative_float,
        default=10.0,
        metavar="S",
        help="on SIGINT/SIGTERM, let open connections finish for up to S seconds (default 10); a second signal"
        " stops at once",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=_positive_int,
        metavar="N",
        help="most accepted connections open at once per guest and worker; more wait in the listen backlog"
        " (default: no limit)",
    )
    serve.add_argument(
        "--max-requests",
        type=_positive_int,
        metavar="N",
        help="recycle a worker after it accepted N connections (socket guests have no requests to count);"
        " its replacement starts first (default: never)",
    )
    serve.add_argument(
        "--metrics",
        metavar="ADDR",
        help="serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT (port 0: any; the log says which;"
        " with workers, worker i gets PORT+i-1)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log each accepted connection when it closes: peer, duration, bytes (wasi:http components: each"
        " request, in the common log format)",
    )
    add_guest_source(serve, "the .wasm file or oci:// reference (default: the bundled demo)")
    serve.set_defaults(handler=_serve, default_log_level="info")
    inspect = commands.add_parser(
        "inspect", help="show a module's kind, imports and exports", description="Describe a module without running it."
    )
    inspect.add_argument("module", help="the .wasm (or .wat) file")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect)
    oci_commands.register(commands)
    k8s_commands.register(commands)
    runtime_commands.register(commands)
    return parser


def add_guest_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that starts a guest shares."""
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="host log detail")
    parser.add_argument(
        "--log-format", choices=logs.FORMATS, default="text", help="'json': one JSON object per log line"
    )
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
        "--max-fds",
        type=_positive_int,
        default=Limits().max_fds,
        metavar="N",
        help="most descriptors the guest may hold, stdio and preopens included (default: %(default)s)",
    )
    parser.add_argument(
        "--trap-unknown-imports", action="store_true", help="start despite unknown imports; they trap if called"
    )
    parser.add_argument(
        "-p", "--publish", action="append", default=[], metavar="[IP:]HOST:GUEST", help="map a guest port"
    )
    parser.add_argument(
        "--host", metavar="ADDR", help="bind the guest's sockets to the IP address ADDR instead of the guest's choice"
    )
    parser.add_argument("--allow-outbound", action="append", default=[], metavar="SPEC", help="allow outbound traffic")
    parser.add_argument(
        "--idle-backoff",
        type=_non_negative_float,
        default=Network().idle_backoff,
        metavar="S",
        help="longest delay before re-reporting readiness the guest ignored (0: strictly level-triggered)",
    )


def add_guest_source(parser: argparse.ArgumentParser, module_help: str) -> None:
    """Where a guest comes from and its arguments, the same for ``run`` and ``serve``."""
    parser.add_argument("--bundle", metavar="DIR", help="run the OCI runtime bundle in DIR (config.json + rootfs)")
    parser.add_argument(
        "guest",
        nargs=argparse.REMAINDER,
        metavar="MODULE [--] ARG",
        help=f"MODULE: {module_help}. The words after it are the guest's arguments (a -- before them is "
        "dropped); with --bundle there is no MODULE and every word is a guest argument",
    )
    oci_commands.add_pull_options(parser)


def _port_number(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


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


#: The wasi:http front end's limits (``HttpLimits`` fields, whose defaults apply when a flag is not given).
_HTTP_LIMITS = {
    "max_header_bytes": (_positive_int, "N", "answer 431 to a request line and headers over N bytes (default 16384)"),
    "max_body_bytes": (_positive_int, "N", "answer 413 to a request body over N bytes (default 67108864: 64 MiB)"),
    "header_timeout": (_positive_float, "S", "answer 408 when a request's headers take over S seconds (default 10)"),
    "idle_timeout": (_positive_float, "S", "close a keep-alive connection idle for S seconds; also how long a request"
                     " body may stall or a client read nothing of a response (default 60)"),
    "request_timeout": (_positive_float, "S", "answer 504 when the component has not started its response within"
                        " S seconds (default 30)"),
}  # fmt: skip


def _add_http_limits(parser: argparse.ArgumentParser) -> None:
    """One flag per front-end limit: ``--header-timeout`` for ``header_timeout``."""
    for name, (kind, metavar, what) in _HTTP_LIMITS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, metavar=metavar, help=f"wasi:http components: {what}")


def _http_limits(ns: argparse.Namespace) -> HttpLimits:
    """The front end's limits: the flags given, the defaults for the rest."""
    from .http import HttpLimits

    return HttpLimits(**{name: getattr(ns, name) for name in _HTTP_LIMITS if getattr(ns, name) is not None})


def host_from_args(ns: argparse.Namespace, args: list[str]) -> Host:
    limits = Limits(
        memory=ns.memory_limit * 1024 * 1024 if ns.memory_limit else None,
        timeout=ns.timeout,
        fuel=ns.fuel,
        max_fds=ns.max_fds,
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


def _guest(ns: argparse.Namespace, default: Callable[[], Module] | None = None) -> tuple[Module, Host]:
    """The module and host a command line names: a file, an ``oci://`` reference, a bundle, else ``default``.

    The words after the options are ``[--] MODULE [--] ARG...``, or ``[--] ARG...`` with
    ``--bundle``: one ``--`` may come first. Guest arguments come after the image's or bundle's own.
    """
    loop.kind()  # a bad WASMHOST_LOOP fails before any guest is loaded
    args, source = _without_dash(ns.guest), None
    if args and not ns.bundle:
        source, args = args[0], _without_dash(args[1:])
    host = host_from_args(ns, args)
    if ns.bundle:
        from .oci.bundle import read_bundle

        bundle = read_bundle(Path(ns.bundle))
        mounts = [Preopen(m.guest, m.host, m.read_only) for m in bundle.mounts]
        return Module(bundle.module, name=bundle.args[0]), attrs.evolve(
            host, args=[*bundle.args[1:], *args], env=[*bundle.env, *host.env], preopens=[*mounts, *host.preopens]
        )
    if source is None:
        if default is None:
            raise ConfigError(f"{ns.command}: give a module (file or oci:// reference) or --bundle DIR")
        return default(), host
    if source.startswith("oci://"):
        from .oci.pull import pull

        pulled = pull(source, progress=sys.stderr.isatty(), max_module_size=ns.max_module_size)
        return Module(pulled.path, name=source), attrs.evolve(
            host, args=[*pulled.args[1:], *args], env=[*pulled.env, *host.env]
        )
    return Module(source), host


def _without_dash(words: list[str]) -> list[str]:
    return words[1:] if words[:1] == ["--"] else words


def _demo() -> Module:
    return Module(server.demo_module(), name="http-hello.wasm (demo)")


def _run(ns: argparse.Namespace) -> int:
    module, host = _guest(ns)
    with Instance(module, host) as instance:
        code, sig = server.run(instance)
    return _SIGNAL_EXIT[signal.Signals(sig)] if sig is not None else code


def _inspect(ns: argparse.Namespace) -> int:
    """Exit 0 when the module would link under wasmhost, 1 when imports are missing (a
    component always links: what wasmhost does not implement is refused or traps)."""
    module = Module(ns.module)
    if module.is_component:
        from .wasip2.linking import unprovided

        unknown = unprovided(module.imports)
    else:
        unknown = module.unknown_imports()
    missing = [f"{i.module}::{i.name}" for i in unknown]
    imports, interfaces = _by_interface(module.imports), _by_interface(module.export_items)
    interfaces.pop("", None)  # bare exports: already in module.exports
    if ns.json:
        info: dict[str, object] = {"kind": module.kind.value, "size": len(module.wasm), "exports": module.exports}
        info |= {"exported_interfaces": interfaces, "imports": imports, "unknown_imports": missing}
        print(json.dumps(info, indent=2))
    else:
        print(f"{module.name}: {module.kind.value}, {len(module.wasm)} bytes")
        print("exports: " + ", ".join(f"{name} ({kind})" for name, kind in module.exports.items()))
        for source, names in interfaces.items():
            print(f"exports from {source} ({len(names)}): {', '.join(names)}")
        for source, names in imports.items():
            print(f"imports from {source} ({len(names)}): {', '.join(names)}")
        if module.is_component:
            print("links with wasmhost: yes" + (f"; not implemented (refused or trap if called): {', '.join(missing)}"
                                                 if missing else ""))  # fmt: skip
        else:
            print(f"unknown imports: {', '.join(missing)}" if missing else "links with wasmhost: yes")
    return 1 if missing and not module.is_component else 0


def _by_interface(items: list[Import]) -> dict[str, list[str]]:
    """Item names grouped by the module (core) or interface (component) that holds them."""
    grouped: dict[str, list[str]] = {}
    for item in items:
        grouped.setdefault(item.module, []).append(item.name)
    return grouped


def _serve(ns: argparse.Namespace) -> int:
    module, host = _guest(ns, default=_demo)
    if ns.limit_concurrency is not None:
        host = attrs.evolve(host, network=attrs.evolve(host.network, limit_concurrency=ns.limit_concurrency))
    count = _worker_count(ns.workers)
    http = None
    if module.kind is GuestKind.HTTP_COMPONENT:
        http = server.HttpOptions(ns.port, ns.reuse_instances, _http_limits(ns))
    if count > 1 or ns.max_requests is not None:  # recycling needs a supervisor, even for one worker
        from . import workers

        return workers.Workers(
            module, host, count, ns.graceful_timeout, ns.host_call_stats, max_requests=ns.max_requests,
            metrics=ns.metrics, log_format=ns.log_format, access_log=ns.access_log, http=http,
        ).run()  # fmt: skip
    companions: list[server.Companion] = []
    if ns.metrics is not None:
        from . import admin

        companions.append(admin.Admin(admin.bind(ns.metrics)))
    if http is not None:
        return server.serve_http(module, host, http, ns.graceful_timeout, companions=companions)
    with Instance(module, host) as instance:
        try:
            code, _sig = server.run(instance, ns.graceful_timeout, companions=companions)
        finally:
            if ns.host_call_stats:
                server.print_host_calls(instance)
    return code


def _worker_count(text: str) -> int:
    """``--workers``: a positive number, or ``auto`` for one per CPU."""
    if text == "auto":
        return len(os.sched_getaffinity(0))
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError(f"--workers {text}: expected a positive number or 'auto'")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    level = str(getattr(ns, "log_level", None) or getattr(ns, "default_log_level", "warning"))
    logs.configure(level, getattr(ns, "log_format", "text"), getattr(ns, "access_log", False))
    try:
        code: int = ns.handler(ns)
        return code
    except Timeout:
        return EXIT_TIMEOUT  # the instance logged it
    except RegistryError as exc:
        _say(str(exc))
        return EXIT_FAILURE
    except GuestTrap as exc:
        backtrace = exc.details().partition("\n")[2]  # its first line was logged by the instance
        if backtrace and getattr(ns, "log_format", "text") == "json":
            logging.getLogger("wasmhost").error("%s", backtrace)
        elif backtrace:
            print(backtrace, file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except HostFailure:
        return EXIT_USAGE  # logged by the instance
    except WasmhostError as exc:
        _say(str(exc))
        return EXIT_USAGE


def _say(message: str) -> None:
    logging.getLogger("wasmhost").error("%s", message)
