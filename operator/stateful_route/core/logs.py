"""Structured logs: one event per line, ``key=value`` or JSON, with credentials scrubbed."""

from __future__ import annotations

import json
import logging
import re
from typing import Literal

from stateful_route.core import urls

__all__ = ["LogFormat", "configure", "redact"]

LogFormat = Literal["kv", "json"]

_NEEDS_QUOTES = re.compile(r"[\s\"=]")


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and error)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(fmt: LogFormat = "kv", level: int = logging.INFO) -> None:
    """Send every log record (ours and kopf's) to stderr in ``fmt``, one event per line."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access logs and kubernetes' debug chatter are not events of ours.
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
