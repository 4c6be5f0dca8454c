"""Structured logs: one JSON object per line.

Every record has `ts` (Unix seconds, float), `level`, `node` (validator index), `event`
(a short snake_case name) and the record's own fields. Use `log(logger, "event", k=v)`.
Values that JSON cannot encode are rendered with `repr`, bytes as hex.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
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


class WarningLimiter:
    """At most one warning line per (event, subject) per `interval_s`, into the node's log.

    For what an outsider or a misconfigured peer can repeat at will (a redialing peer with
    a wrong key, a client flooding the RPC): the operator hears of it once per interval,
    and the line says how many occurrences it stands for since the previous one. Bounded:
    at most `max_subjects` subjects are tracked (the oldest is forgotten first).
    """

    def __init__(
        self,
        interval_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_subjects: int = 1024,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._max_subjects = max_subjects
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # -> (logged at, suppressed)

    def warn(self, event: str, subject: str, **fields: Any) -> bool:
        """Log `event` unless it was logged for `subject` within the interval; True if logged."""
        now = self._clock()
        key = (event, subject)
        logged_at, suppressed = self._last.get(key, (-math.inf, 0))
        if now - logged_at < self.interval_s:
            self._last[key] = (logged_at, suppressed + 1)
            return False
        if key not in self._last and len(self._last) >= self._max_subjects:
            self._last.pop(next(iter(self._last)))  # bound: forget the oldest subject
        self._last[key] = (now, 0)
        log(get_logger(), event, logging.WARNING, **fields, repeats_since_last_line=suppressed)
        return True
