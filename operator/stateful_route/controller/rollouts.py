"""What the operator reads from a StatefulSet: replicas, partition and revisions, and which pods
a rolling update or a scale-down is about to replace (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stateful_route.controller.pods import PodRecord

__all__ = ["StatefulSetRecord", "record"]


@dataclass(frozen=True, slots=True)
class StatefulSetRecord:
    """One StatefulSet as the operator indexes it."""

    name: str
    replicas: int
    partition: int = 0
    current_revision: str | None = None
    update_revision: str | None = None

    @property
    def rolling(self) -> bool:
        """A rolling update is under way: the update revision is not yet the current one."""
        return bool(self.update_revision) and self.update_revision != self.current_revision

    def outdated(self, pod: PodRecord) -> bool:
        """The pod will be replaced: it runs an old revision at or above the partition while a
        rolling update is under way, or its ordinal is beyond the replicas (a scale-down)."""
        if pod.ordinal >= self.replicas:
            return True
        return self.rolling and pod.revision != self.update_revision and pod.ordinal >= self.partition


def _count(value: Any, default: int) -> int:
    return value if type(value) is int and value >= 0 else default


def record(body: Mapping[str, Any]) -> StatefulSetRecord:
    """The record of a StatefulSet body (Kubernetes' defaults for absent fields)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
    return StatefulSetRecord(
        name=str((body.get("metadata") or {}).get("name")),
        replicas=_count(spec.get("replicas"), 1),
        partition=_count(rolling.get("partition"), 0),
        current_revision=status.get("currentRevision") or None,
        update_revision=status.get("updateRevision") or None,
    )
