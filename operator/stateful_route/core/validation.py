"""Input checks shared by every public operation; each raises InvalidInput naming the field."""

from __future__ import annotations

import re
from typing import Any

from stateful_route.core.errors import InvalidInput

__all__ = [
    "MAX_POD_INDEX",
    "MAX_UID_BYTES",
    "dns_label",
    "flag",
    "integer",
    "invalid",
    "load",
    "pod_index",
    "pod_uid",
    "prefix",
    "seconds",
    "uid",
]

MAX_UID_BYTES = 256
MAX_POD_INDEX = 1_000_000
MAX_INT = 2**31 - 1  # what Lua and Redis hashes hold exactly
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_POD_UID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def invalid(field: str, problem: str) -> InvalidInput:
    """Build the error for a bad ``field`` (raise it at the call site)."""
    return InvalidInput(field, problem)


def dns_label(field: str, value: Any) -> str:
    """A namespace or service: a DNS-1123 label (lower-case alphanumerics and '-', ≤ 63)."""
    if type(value) is not str:
        raise invalid(field, f"must be a str, got {type(value).__name__}")
    if not _DNS_LABEL.fullmatch(value):
        raise invalid(field, f"must be a DNS-1123 label (a-z, 0-9, '-', at most 63), got {value!r:.80}")
    return value


def uid(value: Any) -> str:
    """A user id: any non-empty str of at most MAX_UID_BYTES bytes of UTF-8."""
    if type(value) is not str:
        raise invalid("uid", f"must be a str, got {type(value).__name__}")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise invalid("uid", "must be encodable as UTF-8") from None
    if not 0 < size <= MAX_UID_BYTES:
        raise invalid("uid", f"must be 1 to {MAX_UID_BYTES} bytes of UTF-8, got {size}")
    return value


def integer(field: str, value: Any, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """An int between ``minimum`` and ``maximum``."""
    if type(value) is not int:  # bool is an int subclass, and is rejected here on purpose
        raise invalid(field, f"must be an int, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise invalid(field, f"must be between {minimum} and {maximum}, got {value}")
    return value


def pod_index(value: Any, field: str = "pod") -> int:
    """A pod ordinal: an int ≥ 0."""
    return integer(field, value, maximum=MAX_POD_INDEX)


def pod_uid(value: Any, field: str = "pod_uid") -> str:
    """A pod's uid (Kubernetes' ``metadata.uid``, a UUID): 1-128 of [A-Za-z0-9_.-], so it never
    holds the ',' that separates it from what Redis stores beside it."""
    if type(value) is not str or not _POD_UID.fullmatch(value):
        raise invalid(field, f"must be 1-128 of A-Z a-z 0-9 _ . - (metadata.uid), got {value!r:.60}")
    return value


def load(value: Any, field: str = "load") -> int:
    """A load figure reported by a pod, or a link count: an int ≥ 0."""
    return integer(field, value)


def flag(field: str, value: Any) -> bool:
    """A strict bool."""
    if type(value) is not bool:
        raise invalid(field, f"must be a bool, got {type(value).__name__}")
    return value


def seconds(field: str, value: Any, *, minimum: float = 0.0) -> float:
    """A duration in seconds (int or float, finite, ≥ minimum)."""
    if type(value) not in (int, float) or value != value or value in (float("inf"), float("-inf")):
        raise invalid(field, f"must be a finite number of seconds, got {value!r:.40}")
    if value < minimum:
        raise invalid(field, f"must be at least {minimum}, got {value}")
    return float(value)


def prefix(value: Any) -> str:
    """A key prefix: 1-32 of [A-Za-z0-9_.-] (no braces, so it never changes a hash slot)."""
    if type(value) is not str or not _PREFIX.fullmatch(value):
        raise invalid("prefix", f"must be 1-32 of A-Z a-z 0-9 _ . -, got {value!r:.40}")
    return value
