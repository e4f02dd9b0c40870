"""The gateway's log lines: plain text, or one JSON object per line (``GIG_LOG_FORMAT``).

Owns the process's root log handler: its level (``GIG_LOG_LEVEL``) and its shape. A JSON
line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``exception``
when there is one, and ``trace_id``/``span_id`` when the line was written inside a
span, so that a log search and a trace viewer meet.

It must never add a field the gateway did not choose: a record's ``args`` and ``extra``
attributes are not copied (only the message its code formatted, and every message is
written not to carry a secret), so a value passed to a logger by mistake cannot ride
along in a field nobody reads.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from gigmcp.telemetry import tracing

FORMATS = ("text", "json")
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def install(fmt: str, level: str) -> None:
    """Give the root logger one handler on stderr in ``fmt`` at ``level`` (replacing any
    it had: a second call reconfigures, it does not duplicate lines)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
