"""What a PromQL expression reads, for the tests that check our dashboard and alerts against the
series the exporters really serve: the metric names it selects, and the labels its selectors match.

A small scanner, not a parser: promtool parses the same expressions in the tests (a syntax error
fails there), so this only has to tell metric names from functions, keywords and label names.
"""

from __future__ import annotations

import re

# Words that are not metric names where a name could stand: operators and modifiers.
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
     "group_right", "inf", "nan", "start", "end", "atan2"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")
_SELECTOR = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
# Grafana's interval variables, as a PromQL duration (other variables stand inside label strings).
GRAFANA_INTERVALS = re.compile(
    r"\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}"
)


def grafana_to_promql(expr: str) -> str:
    """A dashboard target's expression as Prometheus would receive it (intervals made concrete)."""
    return GRAFANA_INTERVALS.sub("5m", expr)


def metric_names(expr: str) -> set[str]:
    """Every metric name the expression selects."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAME.findall(text) if name not in KEYWORDS}


def matched_labels(expr: str) -> dict[str, set[str]]:
    """metric name -> the label names its selectors match on."""
    found: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(expr):
        found.setdefault(name, set()).update(_MATCHER_LABEL.findall(_STRING.sub('""', matchers)))
    return found
