"""``python -m fuzz TARGET [libFuzzer flags and corpus directories]``: run one target under
atheris, with wasmhost and h11 instrumented for coverage. ``python -m fuzz seeds`` rewrites
every target's seed corpus (``fuzz/corpus/``) from its ``seeds()``."""

from __future__ import annotations

import importlib
import sys

from . import HERE, TARGETS


def _write_seeds() -> None:
    for target in TARGETS:
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
        for name, data in importlib.import_module(f"fuzz.{target}").seeds().items():
            (folder / name).write_bytes(data)


def main() -> None:
    if sys.argv[1:2] == ["seeds"]:
        _write_seeds()
        return
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus dirs] | seeds")
    import atheris  # type: ignore[import-untyped]

    target = sys.argv[1]
    with atheris.instrument_imports(include=["wasmhost", "h11"]):
        module = importlib.import_module(f"fuzz.{target}")
    atheris.Setup([sys.argv[0], *sys.argv[2:]], module.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
