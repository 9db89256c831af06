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
from pathlib import Path

from .builder import FORMATS, Built, build
from .bundle import Mount, write_bundle
from .credentials import Credentials
from .errors import OciError
from .layout import write_layout
from .pull import pull
from .push import push
from .reference import SCHEME


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `oci` and its subcommands to a CLI's subparsers."""
    oci = subparsers.add_parser(
        "oci",
        help="build, push and pull Wasm OCI images; write runtime bundles",
        description="Package Wasm modules as OCI images or artifacts and move them through registries.",
    )
    commands = oci.add_subparsers(dest="oci_command", metavar="COMMAND", required=True)

    build_cmd = commands.add_parser(
        "build",
        help="package a module as an image or artifact",
        description="Package MODULE; write it as an OCI layout (--output) or push it (--push).",
    )
    build_cmd.add_argument("module", type=Path, help="the .wasm file")
    build_cmd.add_argument(
        "-t", "--tag", required=True, metavar="REF", help="reference to build for, e.g. ghcr.io/me/app:v1"
    )
    _build_options(build_cmd)
    target = build_cmd.add_mutually_exclusive_group()
    target.add_argument("--output", type=Path, metavar="DIR", help="write (or add to) an OCI image layout in DIR")
    target.add_argument("--push", action="store_true", help="push to REF")
    _registry_options(build_cmd)
    build_cmd.set_defaults(handler=_build)

    push_cmd = commands.add_parser(
        "push", help="build and push a module", description="Build MODULE and push it to REF."
    )
    push_cmd.add_argument("module", type=Path, help="the .wasm file")
    push_cmd.add_argument("ref", metavar="REF", help="e.g. ghcr.io/me/app:v1")
    _build_options(push_cmd)
    _registry_options(push_cmd)
    push_cmd.set_defaults(handler=_push)

    pull_cmd = commands.add_parser(
        "pull",
        help="pull a module into the cache",
        description="Pull the module REF names (any Wasm layer type, or an image) into the "
        "content-addressed cache and print its path.",
    )
    pull_cmd.add_argument("ref", metavar="REF", help="[oci://]HOST/REPO[:TAG][@sha256:...]")
    pull_cmd.add_argument("-o", "--output", type=Path, metavar="FILE", help="also copy the module to FILE")
    _registry_options(pull_cmd)
    pull_cmd.set_defaults(handler=_pull)

    bundle_cmd = commands.add_parser(
        "bundle",
        help="write an OCI runtime bundle for crun or youki",
        description="Write DIR/config.json and DIR/rootfs/ to run MODULE (a .wasm file or "
        "an oci:// reference) with `crun run` or `wasmhost run --bundle DIR`.",
    )
    bundle_cmd.add_argument("module", metavar="MODULE", help="a .wasm file or oci://REF")
    bundle_cmd.add_argument("directory", type=Path, metavar="DIR")
    bundle_cmd.add_argument(
        "--env", action="append", type=_env, default=[], metavar="KEY=VALUE", help="set a variable (repeatable)"
    )
    bundle_cmd.add_argument(
        "--mount",
        action="append",
        type=_mount,
        default=[],
        metavar="HOST:GUEST[:ro]",
        help="bind a host directory (repeatable)",
    )
    bundle_cmd.add_argument(
        "args", nargs="*", metavar="ARG", help="arguments for the module; options go before MODULE, ARGs after --"
    )
    _registry_options(bundle_cmd)
    bundle_cmd.set_defaults(handler=_bundle)


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
    parser.add_argument(
        "--env",
        action="append",
        type=_env,
        default=[],
        metavar="KEY=VALUE",
        help="image environment variable (repeatable)",
    )
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


def _credentials(args: argparse.Namespace) -> Credentials | None:
    if args.password_stdin != bool(args.username):
        raise OciError("--username", "--username and --password-stdin go together")
    if not args.username:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise OciError("--password-stdin", "no password on standard input")
    return Credentials(args.username, password)


def _built(args: argparse.Namespace, ref: str) -> Built:
    return build(args.module, ref, args.format, args=args.args, env=dict(args.env), platform=args.platform)


def _build(args: argparse.Namespace) -> int:
    credentials = _credentials(args)
    built = _built(args, args.tag)
    if args.output:
        write_layout(built, args.output)
    if args.push:
        push(built, insecure=args.insecure, credentials=credentials)
    print(f"{built.reference.pinned(built.digest)} ({built.format}, {built.size} bytes)")
    return 0


def _push(args: argparse.Namespace) -> int:
    credentials = _credentials(args)
    built = _built(args, args.ref)
    pinned = push(built, insecure=args.insecure, credentials=credentials)
    print(f"{pinned} ({built.format}, {built.size} bytes)")
    return 0


def _pull(args: argparse.Namespace) -> int:
    pulled = pull(args.ref, insecure=args.insecure, credentials=_credentials(args))
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
    module: Path = Path(args.module)
    extra_args, env = list(args.args), dict(args.env)
    if args.module.startswith(SCHEME):
        pulled = pull(args.module, insecure=args.insecure, credentials=_credentials(args))
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


def _mount(text: str) -> Mount:
    host, _, guest = text.partition(":")
    guest, _, mode = guest.partition(":")
    if not host or not guest.startswith("/") or mode not in ("", "ro", "rw"):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:GUEST[:ro] with GUEST absolute")
    return Mount(guest, Path(host), mode == "ro")
