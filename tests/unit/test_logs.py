"""Structured logs: one event per line, key=value or JSON, credentials scrubbed."""

from __future__ import annotations

import json
import logging

from stateful_route.core.logs import JsonFormatter, KeyValueFormatter, redact


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("stateful_route.operator", logging.INFO, __file__, 1, message, args, None)


def test_passwords_in_urls_are_replaced():
    assert redact("redis://:hunter2@redis:6379/0") == "redis://***@redis:6379/0"
    assert redact("rediss://user:p%40ss@host/1 and redis://plain:6379") == (
        "rediss://***@host/1 and redis://plain:6379"
    )


def test_key_value_lines_keep_our_events_and_quote_free_text():
    line = KeyValueFormatter().format(record("event=evicted pod=%d url=%s", 3, "redis://:pw@r:6379"))
    assert "\n" not in line
    assert line.split(" ", 1)[1].startswith("level=info logger=stateful_route.operator event=evicted pod=3")
    assert "pw" not in line
    free = KeyValueFormatter().format(record("Handler 'x' succeeded.\nsecond line"))
    assert "\"Handler 'x' succeeded.\\nsecond line\"" in free
    assert "\n" not in free


def test_json_lines_parse_and_carry_the_message():
    line = JsonFormatter().format(record("event=operator_start redis=%s", "redis://u:pw@r:6379"))
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["msg"] == "event=operator_start redis=redis://***@r:6379"


def test_json_lines_put_an_events_fields_at_the_top_level():
    message = "event=evicted namespace=%s route=%s pod=%d removed=%d rebound=%d reason=%r"
    line = JsonFormatter().format(record(message, "games", "room", 3, 120, 118, "pod deleted: it's gone"))
    entry = json.loads(line)
    assert {k: entry[k] for k in ("event", "namespace", "route", "pod", "removed", "rebound", "reason")} == {
        "event": "evicted",
        "namespace": "games",
        "route": "room",
        "pod": 3,
        "removed": 120,
        "rebound": 118,
        "reason": "pod deleted: it's gone",
    }
    assert entry["level"] == "info"
    assert entry["msg"].startswith("event=evicted namespace=games")


def test_json_fields_never_replace_the_records_own_and_free_text_has_none():
    entry = json.loads(JsonFormatter().format(record("event=odd level=%s logger=%s", "x", "y")))
    assert (entry["level"], entry["logger"], entry["event"]) == ("info", "stateful_route.operator", "odd")
    free = json.loads(JsonFormatter().format(record("Handler 'x' succeeded: event=1")))
    assert set(free) == {"ts", "level", "logger", "msg"}
    half = json.loads(JsonFormatter().format(record("event=x but then prose")))
    assert "event" not in half
