"""The long fuzz run: every target of ``fuzz/`` under atheris for N seconds each.

    python benchmarks/fuzz.py                     # 300 s per target
    python benchmarks/fuzz.py --seconds 30 --targets http_protocol

Each target runs as ``python -m fuzz TARGET`` (libFuzzer under atheris) over a scratch corpus
seeded from ``fuzz/corpus/TARGET`` and ``fuzz/regressions/TARGET``; the committed folders are
never written. A crash stops libFuzzer: its input is kept (the path is printed; commit it to
``fuzz/regressions/TARGET/`` once the bug is fixed) and the target restarts for the time left.
Prints executions, executions per second and crashes per target.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fuzz import HERE, TARGETS  # noqa: E402 - after the path to the checkout
from fuzz.scratch import TMPFS  # noqa: E402

_DONE = re.compile(r"Done (\d+) runs in")
_PROGRESS = re.compile(r"^#(\d+)\s", re.MULTILINE)
_DICTS = {"http_protocol": HERE / "http.dict", "serve_bytes": HERE / "http.dict"}


def _run(target: str, seconds: float, work: Path) -> tuple[int, list[Path], str]:
    """Fuzz ``target`` for ``seconds``: (executions, crashing inputs kept, libFuzzer's last line)."""
    corpus, artifacts = work / target / "corpus", work / target / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    executions, crashes, last = 0, [], ""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) >= 1:
        flags = [f"-max_total_time={int(left)}", f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
        if target in _DICTS:
            flags.append(f"-dict={_DICTS[target]}")
        seen = set(artifacts.iterdir())
        command = [sys.executable, "-m", "fuzz", target, *flags, str(corpus), str(HERE / "corpus" / target),
                   str(HERE / "regressions" / target)]  # fmt: skip
        # libFuzzer ends the process without Python's exit handlers: a session of its own lets
        # whatever the target started (serve_bytes' server) go with it, and its temporary
        # files are made in the scratch directory.
        env = {**os.environ, "TMPDIR": str(work)}
        with subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env,
                              start_new_session=True) as proc:  # fmt: skip
            _, log = proc.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        found = _DONE.search(log)
        progress = _PROGRESS.findall(log)
        executions += int(found.group(1)) if found else int(progress[-1]) if progress else 0
        lines = [line for line in log.splitlines() if _PROGRESS.match(line)]
        last = lines[-1] if lines else last
        new = sorted(set(artifacts.iterdir()) - seen)
        crashes += new
        if proc.returncode != 0 and not new:
            if "run interrupted" in log:  # a signal from outside: go on for the time left
                print(f"  {target}: libFuzzer was interrupted by a signal after {last}; restarting", flush=True)
                continue
            print(log[-3000:], file=sys.stderr)
            raise SystemExit(f"fuzz {target}: libFuzzer failed (exit {proc.returncode}) without a crash input")
        for path in new:
            cause = [line for line in log.splitlines() if "Error" in line or "assert" in line.lower()]
            print(f"  {target}: CRASH {path} {cause[-1] if cause else ''}", flush=True)
    return executions, crashes, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300, help="per target (default 300)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated (default: all)")
    options = parser.parse_args()
    targets = options.targets.split(",")
    for target in targets:
        if target not in TARGETS:
            parser.error(f"--targets: no target {target!r} (there are {', '.join(TARGETS)})")
    with tempfile.TemporaryDirectory(prefix="wasmhost-fuzz-run-", dir=TMPFS) as scratch:
        print(f"{'target':<15} {'seconds':>8} {'executions':>11} {'exec/s':>8} {'crashes':>8}")
        total, found = 0, 0
        for target in targets:
            start = time.monotonic()
            executions, crashes, last = _run(target, options.seconds, Path(scratch))
            elapsed = time.monotonic() - start
            total += executions
            found += len(crashes)
            print(f"{target:<15} {elapsed:>8.0f} {executions:>11} {executions / elapsed:>8.0f} {len(crashes):>8}")
            print(f"  libFuzzer: {last}", flush=True)
            for path in crashes:
                kept = ROOT / "fuzz" / "crashes" / target / path.name
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_bytes(path.read_bytes())
                print(f"  kept {kept.relative_to(ROOT)}: fix the bug, then move it to fuzz/regressions/{target}/")
        print(f"total: {total} executions, {found} crashes")
    raise SystemExit(1 if found else 0)


if __name__ == "__main__":
    main()
