"""Structured logs: one JSON object a line, with the trace and span of the current request."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

from auth_service.settings import DatabaseSettings

# Attributes every LogRecord has; anything else was passed in `extra=` and goes into the line.
# uvicorn adds `color_message`, the message again with terminal colours: not for JSON.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        entry.update((key, value) for key, value in record.__dict__.items() if key not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: DatabaseSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every command at INFO


class GracefulCutOffIsAWarning(logging.Filter):
    """uvicorn logs the end of its graceful timeout as an ERROR; here it is the intended bound on
    shutdown (the requests it cancels are answered 503 `shutting_down`), so a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith("Cancel %s running task(s)"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def demote_graceful_cut_off(logger: logging.Logger) -> None:
    """Install the filter once on uvicorn's logger."""
    if not any(isinstance(existing, GracefulCutOffIsAWarning) for existing in logger.filters):
        logger.addFilter(GracefulCutOffIsAWarning())
