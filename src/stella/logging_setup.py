"""Structured logging with the request's correlation id on every line, secrets masked.

Every record of every logger goes through the root handler's `structlog` `ProcessorFormatter`:
the stdlib record becomes an event dict (time, level, logger, message, request_id, the known
`extra` fields, the exception), `mask_event` replaces every secret value resolved in this
process and every known credential pattern with `***` (message, exception text and every
field; a line that needs no masking is recognised with one cheap test of all its fields), and
the result is rendered as one JSON object per line — or, when stderr is a terminal, as a
readable console line.
"""

from __future__ import annotations

import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from stella.adapters.masking import mask, mask_value, needs_masking

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


def record_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """time, level, logger, message, request_id, the known extras and the exception text."""
    record: logging.LogRecord = event["_record"]
    entry: EventDict = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": record.levelname.lower(),
        "logger": record.name,
        # the formatter already interpolated the arguments (and emptied `record.args`)
        "message": event.get("event", record.msg),
    }
    request_id = request_id_var.get()
    if request_id:
        entry["request_id"] = request_id
    for key in LOG_FIELDS:
        if hasattr(record, key):
            entry[key] = getattr(record, key)
    if record.exc_info and record.exc_info[0] is not None:
        entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    elif record.exc_text:
        entry["exception"] = record.exc_text
    entry["_record"] = record
    entry["_from_structlog"] = event.get("_from_structlog", False)
    return entry


_UNMASKED_TYPES = frozenset({int, float, bool, type(None)})  # what mask_value leaves alone


def mask_event(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Every field but the record itself masked (message, exception, extras).

    Nearly every line needs no masking: its text fields are tested together, joined, with one
    `needs_masking` call (false only when masking would change none of them); only when it is
    true, or a field holds something other than a string or a number, is each field masked on
    its own."""
    texts: list[str] = []
    for key, value in event.items():
        kind = type(value)
        if kind is str:
            if not key.startswith("_"):
                texts.append(value)
        elif kind not in _UNMASKED_TYPES and not key.startswith("_"):
            break  # a mapping, a sequence or another object: mask_value decides
    else:
        if not needs_masking("\n".join(texts)):
            return event
    return {
        key: value if key.startswith("_") else mask_value(value) for key, value in event.items()
    }


def json_error(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """JSON lines keep today's shape: the exception's last line as `error`."""
    exception = event.pop("exception", None)
    if isinstance(exception, str) and exception:
        event["error"] = exception.splitlines()[-1]
    return event


def _chain(pretty: bool) -> list[Processor]:
    renderer: Processor
    if pretty:
        renderer = structlog.dev.ConsoleRenderer(event_key="message", timestamp_key="time")
        return [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
    renderer = structlog.processors.JSONRenderer()
    return [json_error, structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, error."""

    def __init__(self, pretty: bool = False, **kwargs: Any) -> None:
        super().__init__(
            processors=_chain(pretty),
            foreign_pre_chain=[record_fields, mask_event],
            pass_foreign_args=False,
            **kwargs,
        )

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception:  # noqa: BLE001 - a broken record must not print unmasked text
            return mask(f"unformattable log record from {record.name}: {record.msg!r}")


def configure_logging(level: str, pretty: bool | None = None) -> None:
    """Masked log lines to stderr at `level`: readable on a terminal, JSON lines otherwise."""
    if pretty is None:
        pretty = sys.stderr.isatty()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(pretty=pretty))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic announces every plugin at INFO on each start; only its warnings matter here.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
