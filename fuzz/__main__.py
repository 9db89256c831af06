"""``python -m fuzz TARGET [libFuzzer flags and corpus directories]``: run one target under
atheris, with wasmhost and h11 instrumented for coverage. ``python -m fuzz seeds [TARGET...]``
rewrites the seed corpus (``fuzz/corpus/``) of those targets, or every target's, from its
``seeds()``."""

from __future__ import annotations

import importlib
import sys

from . import HERE, TARGETS


def _write_seeds(targets: list[str]) -> None:
    for target in targets:
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
        for name, data in importlib.import_module(f"fuzz.{target}").seeds().items():
            (folder / name).write_bytes(data)


def main() -> None:
    if sys.argv[1:2] == ["seeds"] and set(sys.argv[2:]) <= set(TARGETS):
        _write_seeds(sys.argv[2:] or list(TARGETS))
        return
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus dirs] | seeds [targets]")
    import atheris  # type: ignore[import-untyped]

    target = sys.argv[1]
    with atheris.instrument_imports(include=["wasmhost", "h11"]):
        module = importlib.import_module(f"fuzz.{target}")
    atheris.Setup([sys.argv[0], *sys.argv[2:]], module.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
