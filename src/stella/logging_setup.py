"""Structured (JSON lines) logging with the request's correlation id on every line."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# `extra` fields copied into the JSON line: ids are bound wherever they are known
LOG_FIELDS = (
    "method",
    "path",
    "status",
    "duration_ms",
    "promotion_id",
    "release_id",
    "environment_id",
    "environment",
    "outcome",
    "run_id",
    "step_id",
    "attempt",
    "step_type",
    "worker",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key in LOG_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    """Send JSON lines to stderr at `level`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic announces every plugin at INFO on each start; only its warnings matter here.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
