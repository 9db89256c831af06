"""Transfer progress: a one-line counter redrawn on a terminal, nothing when piped."""

from __future__ import annotations

import time
from typing import TextIO

#: Transfers smaller than this finish before a counter would be readable.
MIN_BYTES = 256 * 1024


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


class Progress:
    """Counts the bytes of one transfer; draws to `stream` only if it is a terminal."""

    def __init__(self, label: str, total: int, stream: TextIO | None) -> None:
        shown = stream is not None and total >= MIN_BYTES and stream.isatty()
        self._stream = stream if shown else None
        self._label, self._total, self._done, self._drawn = label, total, 0, 0.0

    def advance(self, count: int) -> None:
        """Note `count` more bytes moved; redraw at most ten times a second."""
        self._done += count
        now = time.monotonic()
        if self._stream is not None and (now - self._drawn >= 0.1 or self._done >= self._total):
            self._drawn = now
            percent = 100 * self._done // max(self._total, 1)
            self._stream.write(f"\r{self._label} {_size(self._done)} / {_size(self._total)} ({percent}%)")
            self._stream.flush()

    def close(self) -> None:
        """End the line the counter was drawn on."""
        if self._stream is not None and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
