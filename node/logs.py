"""Structured logs: one JSON object per line.

Every record has `ts` (Unix seconds, float), `level`, `node` (validator index), `event`
(a short snake_case name) and the record's own fields. Use `log(logger, "event", k=v)`.
Values that JSON cannot encode are rendered with `repr`, bytes as hex.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

LOGGER_NAME = "sedna.node"


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


class JsonFormatter(logging.Formatter):
    def __init__(self, node_index: int | None):
        super().__init__()
        self.node_index = node_index

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "node": self.node_index,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=_default, separators=(",", ":"))


def setup_logging(
    level: str = "info",
    *,
    node_index: int | None = None,
    log_file: Path | None = None,
    stream: TextIO | None = None,
) -> logging.Logger:
    """Configure the node logger (idempotent: replaces earlier handlers)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(getattr(logging, level.upper()))
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(node_index))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"event": event, "fields": fields})
