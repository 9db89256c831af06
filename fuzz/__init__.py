"""Coverage-guided fuzz targets (atheris): each module has ``one_input(data: bytes)``, which
raises only when it found a bug. ``python -m fuzz TARGET [libFuzzer flags]`` runs one;
``benchmarks/fuzz.py`` runs them all; ``tests/test_fuzz.py`` replays the corpus and the
regressions. Seeds live in ``fuzz/corpus/TARGET/``, inputs that found a bug in
``fuzz/regressions/TARGET/``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("host_calls", "http_protocol", "serve_bytes", "sockio", "wasip2_calls")


def inputs(target: str) -> list[Path]:
    """The committed inputs of a target: its seed corpus, then its regressions."""
    return [path for kind in ("corpus", "regressions") for path in sorted((HERE / kind / target).glob("[!.]*"))]
