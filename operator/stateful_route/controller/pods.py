"""What the operator reads from a pod: ordinal, readiness, termination and its deadline, revision,
drain annotation (pure)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stateful_route.core.constants import POD_INDEX_LABEL, REVISION_LABEL, ROUTING_ANNOTATION
from stateful_route.core.errors import InvalidInput
from stateful_route.core.state import RoutingState

__all__ = ["PodRecord", "ordinal", "owner", "record", "timestamp"]


@dataclass(frozen=True, slots=True)
class PodRecord:
    """One StatefulSet pod as the operator indexes it."""

    name: str
    uid: str
    ordinal: int
    ready: bool
    terminating: bool
    routing: RoutingState
    bad_annotation: str | None = None  # the value that could not be read, if any
    created: str = ""  # metadata.creationTimestamp (RFC 3339), "" if absent
    deadline: float | None = None  # metadata.deletionTimestamp (Unix seconds): when it is killed
    revision: str | None = None  # the controller-revision-hash label: the StatefulSet revision it runs
    # When a NotReady pod's Ready condition last changed (its lastTransitionTime, Unix seconds),
    # if Kubernetes says: when its grace began, for an operator that did not see it turn.
    not_ready_since: float | None = None


def owner(body: Mapping[str, Any]) -> str | None:
    """The name of the StatefulSet that controls the pod, if one does."""
    for ref in body.get("metadata", {}).get("ownerReferences", None) or ():
        if ref.get("kind") == "StatefulSet" and ref.get("controller", True):
            return str(ref.get("name"))
    return None


def ordinal(body: Mapping[str, Any]) -> int | None:
    """The pod's ordinal: the pod-index label, else the digits after the name's last '-'."""
    meta = body.get("metadata", {})
    label = (meta.get("labels") or {}).get(POD_INDEX_LABEL)
    text = label if label is not None else str(meta.get("name", "")).rpartition("-")[2]
    return int(text) if text.isdigit() and text.isascii() else None


def _ready(status: Mapping[str, Any]) -> tuple[bool, float | None]:
    """Whether the pod is Ready, and when its Ready condition last changed (None: unknown)."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            since = condition.get("lastTransitionTime")
            return condition.get("status") == "True", None if since is None else timestamp(since)
    return False, None


def timestamp(text: Any) -> float | None:
    """An RFC 3339 time as Unix seconds; None when absent or unreadable."""
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def record(body: Mapping[str, Any]) -> PodRecord | None:
    """The record of a StatefulSet pod, or None for a pod we do not route to."""
    meta = body.get("metadata", {})
    index = ordinal(body)
    if index is None or owner(body) is None:
        return None
    deletion = meta.get("deletionTimestamp")
    raw = (meta.get("annotations") or {}).get(ROUTING_ANNOTATION)
    routing, bad = RoutingState.READY, None
    if raw is not None:
        try:
            routing = RoutingState.parse(raw)
        except InvalidInput:
            bad = str(raw)
    ready, changed = _ready(body.get("status") or {})
    return PodRecord(
        name=str(meta.get("name")),
        uid=str(meta.get("uid", "")),
        ordinal=index,
        ready=ready,
        terminating=deletion is not None,
        routing=routing,
        bad_annotation=bad,
        created=str(meta.get("creationTimestamp") or ""),
        # An unreadable deletionTimestamp counts as passed: the pod may be killed any moment.
        deadline=None if deletion is None else (timestamp(deletion) or 0.0),
        revision=(meta.get("labels") or {}).get(REVISION_LABEL),
        not_ready_since=None if ready else changed,
    )
