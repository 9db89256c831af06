"""A minimal block-style YAML writer for JSON-like data (what Kubernetes manifests are).

Strings are always double-quoted, so no value can be misread as a number, a boolean or a
null (the "Norway problem"); the quoting (`quote`) is valid in TOML too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
#: Words YAML 1.1 reads as booleans or null: never written as plain keys.
_RESERVED: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})

#: No floats: YAML 1.1 readers take `1e+100` for a string.
_SIMPLE_KEY: Final = 1024

Value = Mapping[str, "Value"] | Sequence["Value"] | str | int | bool | None


def dump_all(documents: Iterable[Mapping[str, Value]]) -> str:
    """A YAML stream, one `---`-separated document per mapping."""
    return "".join("---\n" + "".join(_mapping(document, 0)) if document else "--- {}\n" for document in documents)


def quote(text: str) -> str:
    """A double-quoted string in the escapes YAML and TOML share: printable ASCII as is,
    everything else as \\uXXXX or \\UXXXXXXXX."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        else:
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def _scalar(value: Value) -> str:
    if isinstance(value, str):
        return quote(value)
    if value is None or isinstance(value, (bool, int)):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED else quote(key)


def _is_collection(value: Value) -> bool:
    return isinstance(value, (Mapping, list, tuple)) and len(value) > 0


def _mapping(mapping: Mapping[str, Value], indent: int) -> list[str]:
    pad, lines = " " * indent, []
    for key, value in mapping.items():
        written = _key(key)
        # A simple key is at most 1024 characters; a longer one takes the explicit `? key` form.
        head = f"{pad}{written}:" if len(written) <= _SIMPLE_KEY else f"{pad}? {written}\n{pad}:"
        if _is_collection(value):
            lines.append(f"{head}\n")
            lines += _block(value, indent + 2)
        else:
            lines.append(f"{head} {_empty_or_scalar(value)}\n")
    return lines


def _sequence(items: Sequence[Value], indent: int) -> list[str]:
    """Items as `- ...`; a mapping item starts on the dash line (`- key: value`)."""
    pad, lines = " " * indent, []
    for item in items:
        if _is_collection(item):
            nested = _block(item, indent + 2)
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines += nested[1:]
        else:
            lines.append(f"{pad}- {_empty_or_scalar(item)}\n")
    return lines


def _block(value: Value, indent: int) -> list[str]:
    if isinstance(value, Mapping):
        return _mapping(value, indent)
    assert isinstance(value, (list, tuple))
    return _sequence(value, indent)


def _empty_or_scalar(value: Value) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return _scalar(value)
