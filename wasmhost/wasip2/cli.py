"""wasi:cli 0.2: arguments, environment, exit, stdio and (never) a terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from .._native.component import Ok
from .context import GuestExit, Wasi
from .streams import InputStream, Sink

ENVIRONMENT = "wasi:cli/environment@0.2.0"
EXIT = "wasi:cli/exit@0.2.0"
STDIN = "wasi:cli/stdin@0.2.0"
STDOUT = "wasi:cli/stdout@0.2.0"
STDERR = "wasi:cli/stderr@0.2.0"
TERMINAL_INPUT = "wasi:cli/terminal-input@0.2.0"
TERMINAL_OUTPUT = "wasi:cli/terminal-output@0.2.0"
RESOURCES = [(TERMINAL_INPUT, "terminal-input"), (TERMINAL_OUTPUT, "terminal-output")]


def get_environment(wasi: Wasi) -> list[tuple[str, str]]:
    return list(wasi.config.env)


def get_arguments(wasi: Wasi) -> list[str]:
    return list(wasi.config.args)


def initial_cwd(_wasi: Wasi) -> None:
    return None


def exit_(_wasi: Wasi, status: Any) -> NoReturn:
    raise GuestExit(0 if isinstance(status, Ok) else 1)


def get_stdin(wasi: Wasi) -> int:
    """Components served over HTTP have no stdin: reads see a closed stream."""
    return wasi.table.push(InputStream())


def get_stdout(wasi: Wasi) -> int:
    return wasi.table.push(Sink(wasi.config.stdout))


def get_stderr(wasi: Wasi) -> int:
    return wasi.table.push(Sink(wasi.config.stderr))


def no_terminal(_wasi: Wasi) -> None:
    return None


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    (ENVIRONMENT, "get-environment"): get_environment,
    (ENVIRONMENT, "get-arguments"): get_arguments,
    (ENVIRONMENT, "initial-cwd"): initial_cwd,
    (EXIT, "exit"): exit_,
    (STDIN, "get-stdin"): get_stdin,
    (STDOUT, "get-stdout"): get_stdout,
    (STDERR, "get-stderr"): get_stderr,
    ("wasi:cli/terminal-stdin@0.2.0", "get-terminal-stdin"): no_terminal,
    ("wasi:cli/terminal-stdout@0.2.0", "get-terminal-stdout"): no_terminal,
    ("wasi:cli/terminal-stderr@0.2.0", "get-terminal-stderr"): no_terminal,
}
