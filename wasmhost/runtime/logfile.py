"""The `--log FILE` / `--log-format text|json` sink, in runc's line formats (containerd's shim reads
the last `"level":"error"` line of the JSON log to explain a failed call)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import attrs

FORMATS = ("text", "json")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@attrs.frozen
class LogFile:
    """Where runtime messages go besides stderr; `path` None: nowhere."""

    path: Path | None = None
    format: str = "text"

    def line(self, level: str, message: str) -> str:
        if self.format == "json":
            return json.dumps({"level": level, "msg": message, "time": _now()})
        return f"time={json.dumps(_now())} level={level} msg={json.dumps(message)}"

    def write(self, level: str, message: str) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("a") as file:
                file.write(self.line(level, message) + "\n")
        except OSError:
            pass  # the message still reaches stderr; a broken log must not hide it

    def route(self) -> None:
        """Send wasmhost's warnings to this file only (none without one): the runtime's stderr
        is the container's, which must carry the guest's output alone; errors still go there."""

        sink = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                sink.write(record.levelname.lower(), record.getMessage())

        logger = logging.getLogger("wasmhost")
        logger.handlers = [Handler()]
        logger.propagate = False
        logger.setLevel(logging.WARNING)
