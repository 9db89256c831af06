"""`wasmhost oci build|push|pull|bundle`: argument parsing and output; the work is elsewhere.

`register` adds the `oci` command to the top-level subparsers. Every subcommand stores its
handler as `handler` in the namespace: `args.handler(args)` returns the exit code, 0 on
success, 2 for bad input and 1 when the registry or the network failed, after printing one
line, `wasmhost: <what>: <why>`, on stderr.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from .errors import OciError
from .limits import MAX_MODULE_SIZE, MiB
from .media import FORMATS

if TYPE_CHECKING:
    from .builder import Built
    from .bundle import Mount
    from .credentials import Credentials

# The handlers import what they use (pull and push bring oras, requests and urllib3):
# registering these parsers must not slow down every other command's start.


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `oci` and its subcommands to a CLI's subparsers."""
    oci = subparsers.add_parser(
        "oci",
        help="build, push and pull Wasm OCI images; write runtime bundles",
        description="Package Wasm modules as OCI images or artifacts and move them through registries.",
    )
    commands = oci.add_subparsers(dest="oci_command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        parser = commands.add_parser(command.name, help=command.summary, description=command.description)
        command.arguments(parser)
        _registry_options(parser)
        parser.set_defaults(handler=command.handler)


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", type=Path, help="the .wasm file")
    parser.add_argument(
        "-t", "--tag", required=True, metavar="REF", help="reference to build for, e.g. ghcr.io/me/app:v1"
    )
    _build_options(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--output", type=Path, metavar="DIR", help="write (or add to) an OCI image layout in DIR")
    target.add_argument("--push", action="store_true", help="push to REF")


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", type=Path, help="the .wasm file")
    parser.add_argument("ref", metavar="REF", help="e.g. ghcr.io/me/app:v1")
    _build_options(parser)


def _pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="REF", help="[oci://]HOST/REPO[:TAG][@sha256:...]")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="also copy the module to FILE")
    add_pull_options(parser)


def add_pull_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that may pull a module (`oci pull`, `oci bundle`, `run`, `serve`)."""
    parser.add_argument(
        "--max-module-size",
        type=_mib,
        default=MAX_MODULE_SIZE,
        metavar="MiB",
        help=f"refuse a layer larger than this, or expanding to more (default {MAX_MODULE_SIZE // MiB})",
    )


def _bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", metavar="MODULE", help="a .wasm file or oci://REF")
    parser.add_argument("directory", type=Path, metavar="DIR")
    _repeatable(parser, "--env", _env, "KEY=VALUE", "set a variable")
    _repeatable(parser, "--mount", _mount, "HOST:GUEST[:ro]", "bind a host directory")
    add_pull_options(parser)
    parser.add_argument(
        "args", nargs="*", metavar="ARG", help="arguments for the module; options go before MODULE, ARGs after --"
    )


def _build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="image",
        help="image (default; crun, youki, runwasi, Docker), artifact (CNCF Wasm artifact) or wasm-to-oci (Krustlet)",
    )
    parser.add_argument(
        "--platform",
        metavar="OS/ARCH",
        help="image platform (default wasi/wasm; linux/amd64 for Linux-only tools such as umoci)",
    )
    _repeatable(parser, "--env", _env, "KEY=VALUE", "image environment variable")
    parser.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="default arguments (image Cmd); options go before the positionals, ARGs after --",
    )


def _registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure", action="store_const", const=True, default=None, help="plain HTTP (automatic for localhost)"
    )
    parser.add_argument("--username", help="registry user (with --password-stdin)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password or token from standard input")


def _repeatable(
    parser: argparse.ArgumentParser, flag: str, parse: Callable[[str], object], metavar: str, summary: str
) -> None:
    """An option that may be given several times; its values collect in a list."""
    parser.add_argument(flag, action="append", type=parse, default=[], metavar=metavar, help=f"{summary} (repeatable)")


def _credentials(args: argparse.Namespace) -> Credentials | None:
    if args.password_stdin != bool(args.username):
        raise OciError("--username", "--username and --password-stdin go together")
    if not args.username:
        return None
    from .credentials import Credentials

    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise OciError("--password-stdin", "no password on standard input")
    return Credentials(args.username, password)


def _built(args: argparse.Namespace, ref: str) -> Built:
    from .builder import build

    return build(args.module, ref, args.format, args=args.args, env=dict(args.env), platform=args.platform)


def _build(args: argparse.Namespace) -> int:
    from .layout import write_layout
    from .push import push

    credentials = _credentials(args)
    built = _built(args, args.tag)
    if args.output:
        write_layout(built, args.output)
    if args.push:
        push(built, insecure=args.insecure, credentials=credentials)
    print(f"{built.reference.pinned(built.digest)} ({built.format}, {built.size} bytes)")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .push import push

    credentials = _credentials(args)
    built = _built(args, args.ref)
    pinned = push(built, insecure=args.insecure, credentials=credentials)
    print(f"{pinned} ({built.format}, {built.size} bytes)")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from .pull import pull

    pulled = pull(
        args.ref, insecure=args.insecure, credentials=_credentials(args), max_module_size=args.max_module_size
    )
    if pulled.offline:
        print(
            f"wasmhost: {args.ref}: registry unreachable, using the cached {pulled.reference.digest}", file=sys.stderr
        )
    path = pulled.path
    if args.output:
        try:
            path = Path(shutil.copyfile(pulled.path, args.output))
        except OSError as exc:
            raise OciError(str(args.output), exc.strerror or "cannot write") from None
    print(path)
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from .bundle import write_bundle
    from .pull import pull
    from .reference import SCHEME

    module: Path = Path(args.module)
    extra_args, env = list(args.args), dict(args.env)
    if args.module.startswith(SCHEME):
        pulled = pull(
            args.module, insecure=args.insecure, credentials=_credentials(args), max_module_size=args.max_module_size
        )
        module = pulled.path
        extra_args = [*pulled.args[1:], *extra_args]
        env = {**dict(pulled.env), **env}
    print(write_bundle(module, args.directory, args=extra_args, env=env, mounts=args.mount))
    return 0


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _mib(text: str) -> int:
    """A positive whole number of MiB, in bytes."""
    value = int(text) if text.isdigit() else 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of MiB")
    return value * MiB


def _mount(text: str) -> Mount:
    host, _, guest = text.partition(":")
    guest, _, mode = guest.partition(":")
    if not host or not guest.startswith("/") or mode not in ("", "ro", "rw"):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:GUEST[:ro] with GUEST absolute")
    from .bundle import Mount

    return Mount(guest, Path(host), mode == "ro")


@attrs.frozen
class _Command:
    """A subcommand: its own arguments (the registry options follow them) and its handler."""

    name: str
    summary: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


_COMMANDS: Final = (
    _Command(
        "build",
        "package a module as an image or artifact",
        "Package MODULE; write it as an OCI layout (--output) or push it (--push).",
        _build_arguments,
        _build,
    ),
    _Command("push", "build and push a module", "Build MODULE and push it to REF.", _push_arguments, _push),
    _Command(
        "pull",
        "pull a module into the cache",
        "Pull the module REF names (any Wasm layer type, or an image) into the "
        "content-addressed cache and print its path.",
        _pull_arguments,
        _pull,
    ),
    _Command(
        "bundle",
        "write an OCI runtime bundle for crun or youki",
        "Write DIR/config.json and DIR/rootfs/ to run MODULE (a .wasm file or "
        "an oci:// reference) with `crun run` or `wasmhost run --bundle DIR`.",
        _bundle_arguments,
        _bundle,
    ),
)
