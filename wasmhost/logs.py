"""How the host logs: ``wasmhost: message`` lines, or one JSON object per line
(``--log-format json``), with the worker's number when there is one; and the access log
(``--access-log``), off unless asked for."""

from __future__ import annotations

import json
import logging
import time

from .net.connections import access_log

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (RFC 3339, UTC), level, logger, message, worker."""

    def __init__(self, worker: int | None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str | int, fmt: str = "text", access: bool = False, worker: int | None = None) -> None:
    """Set up the root logger for a wasmhost process (the CLI, or a worker)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        prefix = "wasmhost" if worker is None else f"wasmhost[{worker}]"
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, handlers=[handler], force=True)
    # The access log is its own switch: on with --access-log whatever --log-level says.
    access_log.setLevel(logging.INFO if access else logging.WARNING)
    access_log.propagate = True
