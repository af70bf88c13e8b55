"""Structured logs: one event per line, ``key=value`` or JSON, with credentials scrubbed."""

from __future__ import annotations

import ast
import json
import logging
import re
from typing import Any, Literal

from stateful_route.core import urls

__all__ = [
    "JsonFormatter",
    "KeyValueFormatter",
    "LogFormat",
    "configure",
    "event_fields",
    "json_line",
    "redact",
]

LogFormat = Literal["kv", "json"]

_NEEDS_QUOTES = re.compile(r"[\s\"=]")
# One ``key=value`` of our events: a bare word, or a value quoted as repr() or json.dumps() quote it.
_FIELD = re.compile(r"""(\w+)=("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S*)(?:\s+|$)""")
_INTEGER = re.compile(r"-?\d+")


def redact(text: str) -> str:
    """``text`` with the user and password of every URL replaced by ``***`` (``urls.redact_text``)."""
    return urls.redact_text(text)


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if not value or _NEEDS_QUOTES.search(value) else value


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg=…``; messages already written as ``event=… k=v`` stay as they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        head = f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()} "
        head += f"logger={record.name} "
        body = message if message.startswith("event=") else f"msg={_quote(message)}"
        if record.exc_info:
            body += f" error={_quote(redact(self.formatException(record.exc_info)))}"
        return head + body


def event_fields(message: str) -> dict[str, Any]:
    """The fields of an event written as ``event=… key=value …`` (quoted values unquoted, whole numbers
    as numbers); empty for any other message, or one that is not wholly ``key=value`` pairs."""
    if not message.startswith("event="):
        return {}
    fields: dict[str, Any] = {}
    at = 0
    while at < len(message):
        match = _FIELD.match(message, at)
        if match is None or match.end() == at:
            return {}
        fields[match[1]] = _value(match[2])
        at = match.end()
    return fields


def _value(raw: str) -> Any:
    if raw[:1] in ("'", '"'):
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    return int(raw) if _INTEGER.fullmatch(raw) else raw


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and error); an event's fields (``event``,
    ``namespace``, ``route``, ``pod``, counts…) as top-level keys a log pipeline can filter on."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        entry: dict[str, Any] = {
            **event_fields(message),
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def json_line(logger: str, level: int, message: str) -> str:
    """One record as JsonFormatter writes it, without configuring logging: for errors that stop a
    program before its logging starts."""
    record = logging.LogRecord(logger, level, __file__, 0, message, None, None)
    return JsonFormatter().format(record)


def configure(fmt: LogFormat = "kv", level: int = logging.INFO) -> None:
    """Send every log record (ours and kopf's) to stderr in ``fmt``, one event per line."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access logs and kubernetes' debug chatter are not events of ours.
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
