"""`wasmhost-runtime`: runc's command line (global flags, then an operation), parsing only.

Every failure is one line on stderr, `wasmhost-runtime: <why>`, also written to the `--log`
file in its format, with exit code 1, as runc does. Containers whose bundle is not Wasm are
runc's (or crun's): their operations are handed over unchanged.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from .. import __version__
from ..errors import WasmhostError
from . import delegate, operations, state
from .errors import RuntimeFailure
from .logfile import FORMATS, LogFile
from .spec import OCI_VERSION, read_spec

PROG: Final = "wasmhost-runtime"
DEFAULT_ROOT: Final = Path("/run/wasmhost-runtime")
EXIT_FAILURE: Final = 1


class _Parser(argparse.ArgumentParser):
    """Usage errors become one line, like every other failure."""

    def error(self, message: str) -> NoReturn:
        raise RuntimeFailure(message)


#: What the runtime does itself; any other operation (exec, pause, update, ...) is runc's.
OPERATIONS: Final = ("create", "start", "state", "kill", "delete", "ps", "features")


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="state directory (default %(default)s)")
    parser.add_argument("--log", type=Path, help="also write errors to this file")
    parser.add_argument("--log-format", choices=FORMATS, default="text", help="text (default) or json")
    # Accepted and ignored: harmless, since a Wasm container gets no cgroup or user namespace of
    # ours; a delegated bundle gets the flags and runc acts on them.
    parser.add_argument("--systemd-cgroup", action="store_true", help="accepted; cgroups are not managed")
    parser.add_argument("--debug", action="store_true", help="accepted")
    parser.add_argument("--rootless", choices=["true", "false", "auto"], help="accepted")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="An OCI runtime with runc's command line that runs Wasm bundles.")
    version = f"{PROG} version {__version__}\nspec: {OCI_VERSION}"
    parser.add_argument("--version", "-v", action="version", version=version)
    _global_options(parser)
    commands = parser.add_subparsers(dest="operation", required=True, metavar="COMMAND")
    create = _operation(commands, "create", "create a container that waits for start")
    create.add_argument("--bundle", "-b", type=Path, default=Path("."), help="the bundle directory (default .)")
    create.add_argument("--pid-file", type=Path, help="write the container's pid here")
    create.add_argument("--console-socket", type=Path, help="AF_UNIX socket that receives the pty master")
    create.add_argument("--no-pivot", action="store_true", help="accepted (nothing is pivoted into)")
    create.add_argument("--no-new-keyring", action="store_true", help="accepted (no keyring is made)")
    create.add_argument("--preserve-fds", type=int, default=0, help="accepted when 0")
    _operation(commands, "start", "release a created container")
    _operation(commands, "state", "print the container's state as JSON")
    kill = _operation(commands, "kill", "send SIGNAL (default SIGTERM) to the container")
    kill.add_argument("signal", nargs="?", default="SIGTERM", help="a name (TERM, SIGTERM) or a number")
    kill.add_argument("--all", "-a", action="store_true", help="every process of the container (it has one)")
    delete = _operation(commands, "delete", "delete a stopped or created container")
    delete.add_argument("--force", "-f", action="store_true", help="kill it first if it runs")
    ps = _operation(commands, "ps", "list the container's processes")
    ps.add_argument("--format", "-f", choices=["table", "json"], default="table")
    commands.add_parser("features", help="what this runtime supports, as JSON")
    return parser


def _operation(commands: Any, name: str, summary: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=summary)
    parser.add_argument("id", metavar="ID", help="the container id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    log = LogFile()
    try:
        options = _Parser(add_help=False)
        _global_options(options)
        known, rest = options.parse_known_args(args)
        log = LogFile(known.log, known.log_format)
        log.route()
        if rest and not rest[0].startswith("-") and rest[0] not in OPERATIONS:
            return _foreign(known.root.absolute(), rest, args)
        ns = build_parser().parse_args(args)
        return _dispatch(ns, args)
    except WasmhostError as exc:  # RuntimeFailure, and the bundle's or module's own errors
        message = str(exc).replace("\n", " ")
        log.write("error", message)
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)
        return EXIT_FAILURE


def _foreign(root: Path, rest: list[str], args: list[str]) -> int:
    """An operation only runc has (exec, pause, update...): runc's containers get it."""
    operation = rest[0]
    if any(state.is_ours(root, arg) for arg in rest[1:]):
        raise RuntimeFailure(f"{operation}: not supported for Wasm containers")
    _hand_over(root, args, f"{operation}: not an operation of {PROG}")


def _dispatch(ns: argparse.Namespace, args: list[str]) -> int:
    root: Path = ns.root.absolute()
    if ns.operation == "features":
        print(json.dumps(_features(), indent=2))
        return 0
    if ns.operation == "create":
        return _create(ns, root, args)
    if not state.is_ours(root, ns.id):
        if (root / ns.id).is_dir():  # runc's state directory: a delegated container
            _hand_over(root, args)
        if ns.operation == "delete" and ns.force:  # as runc: forcing away nothing succeeds
            return 0
    container = state.load(root, ns.id)
    if ns.operation == "start":
        operations.start(container)
    elif ns.operation == "state":
        print(json.dumps(container.state(), indent=2))
    elif ns.operation == "kill":
        operations.kill(container, parse_signal(ns.signal))
    elif ns.operation == "delete":
        operations.delete(container, ns.force)
    elif ns.operation == "ps":
        pids = [container.record.pid] if container.alive() else []
        print(json.dumps(pids) if ns.format == "json" else "\n".join(["PID", *map(str, pids)]))
    return 0


def _create(ns: argparse.Namespace, root: Path, args: list[str]) -> int:
    state.check_id(ns.id)
    if (root / ns.id).exists():
        raise RuntimeFailure(f"container with id exists: {ns.id}")
    spec = read_spec(ns.bundle)
    if not spec.is_wasm:
        _hand_over(root, args, f"{ns.bundle / 'config.json'}: {spec.entrypoint} is not a .wasm entrypoint")
    if ns.preserve_fds:
        raise RuntimeFailure(f"--preserve-fds {ns.preserve_fds}: Wasm containers get no extra descriptors")
    options = operations.CreateOptions(ns.bundle, ns.pid_file, ns.console_socket)
    operations.create(root, ns.id, spec, options, LogFile(ns.log, ns.log_format))
    return 0


def _hand_over(root: Path, args: list[str], why: str = "not a Wasm container") -> NoReturn:
    """Exec runc (or crun) with our arguments; fail with `why` when neither is installed."""
    binary = delegate.find()
    if binary is None:
        raise RuntimeFailure(f"{why}, and neither runc nor crun is installed to run it")
    delegate.run(binary, root, args)


def parse_signal(text: str) -> int:
    """`9`, `KILL` or `SIGKILL`, as runc's kill takes them."""
    if text.isdigit():
        number = int(text)
        if number in {s.value for s in signal.Signals}:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise RuntimeFailure(f"invalid signal: {text}")


def _features() -> dict[str, Any]:
    """The OCI runtime features document: what a Wasm container honours."""
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw"],
        "linux": {"namespaces": ["network"], "capabilities": [], "cgroup": {"v1": False, "v2": False}},
        "annotations": {
            "io.github.wasmhost.delegate": delegate.find() or "",
            "io.github.wasmhost.wasm-annotations": "module.wasm.image/variant=compat, run.oci.handler=wasm",
        },
    }


if __name__ == "__main__":
    sys.exit(main())
