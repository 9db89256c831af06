"""wasi:random 0.2: secure bytes from the OS, insecure ones from a per-process PRNG."""

from __future__ import annotations

import os
import random as _prng
from collections.abc import Callable
from typing import Any

from .context import TooLarge, Wasi

RANDOM = "wasi:random/random@0.2.0"
INSECURE = "wasi:random/insecure@0.2.0"
SEED = "wasi:random/insecure-seed@0.2.0"
RESOURCES: list[tuple[str, str]] = []
_INSECURE = _prng.Random(os.urandom(16))
#: Most bytes one call returns: a guest's ``len`` is a u64, and the host would build the whole
#: answer (32 bytes a byte across the C API) before the guest's memory could refuse it.
MAX_BYTES = 1 << 20


def _size(size: int) -> int:
    if size > MAX_BYTES:
        raise TooLarge(f"{size} random bytes asked for, at most {MAX_BYTES} per call")
    return size


def random_bytes(_wasi: Wasi, size: int) -> bytes:
    return os.urandom(_size(size))


def random_u64(_wasi: Wasi) -> int:
    return int.from_bytes(os.urandom(8), "little")


def insecure_bytes(_wasi: Wasi, size: int) -> bytes:
    return _INSECURE.randbytes(_size(size))


def insecure_u64(_wasi: Wasi) -> int:
    return _INSECURE.getrandbits(64)


def insecure_seed(_wasi: Wasi) -> tuple[int, int]:
    return _INSECURE.getrandbits(64), _INSECURE.getrandbits(64)


FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    (RANDOM, "get-random-bytes"): random_bytes,
    (RANDOM, "get-random-u64"): random_u64,
    (INSECURE, "get-insecure-random-bytes"): insecure_bytes,
    (INSECURE, "get-insecure-random-u64"): insecure_u64,
    (SEED, "insecure-seed"): insecure_seed,
}
