"""What the operator reads from a StatefulSet: replicas, partition and revisions, and which pods
a rolling update or a scale-down is about to replace (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stateful_route.controller.pods import PodRecord
from stateful_route.core.constants import STS_POD_NAME_LABEL

__all__ = ["StatefulSetRecord", "label_selector", "record"]

_OPERATORS = {"In": "in", "NotIn": "notin"}


@dataclass(frozen=True, slots=True)
class StatefulSetRecord:
    """One StatefulSet as the operator indexes it."""

    name: str
    replicas: int
    partition: int = 0
    current_revision: str | None = None
    update_revision: str | None = None
    # Its pods' label selector (with the StatefulSet pod label), for listing only its own pods;
    # None when its selector cannot be written as one.
    selector: str | None = None

    @property
    def rolling(self) -> bool:
        """A rolling update is under way by the status: the update revision is not yet the
        current one. Not so in a rollback: see ``replaces``."""
        return bool(self.update_revision) and self.update_revision != self.current_revision

    def replaces(self, pod: PodRecord) -> bool:
        """The controller will replace the pod with one of the update revision: it runs another
        revision, at or above the partition. By the pod's own revision, not by the status alone:
        rolled back mid-rollout, the update revision is the current one again (the controller
        reuses the old revision) while the pods already updated are replaced, highest first."""
        if pod.ordinal < self.partition or not self.update_revision:
            return False
        if pod.revision is None:  # no revision label: only the status can tell
            return self.rolling
        return pod.revision != self.update_revision

    def outdated(self, pod: PodRecord) -> bool:
        """The pod will be replaced: by a rolling update (``replaces``), or as its ordinal is
        beyond the replicas (a scale-down)."""
        return pod.ordinal >= self.replicas or self.replaces(pod)


def _count(value: Any, default: int) -> int:
    return value if type(value) is int and value >= 0 else default


def label_selector(selector: Any) -> str | None:
    """A StatefulSet's ``spec.selector`` as a label selector string, narrowed to StatefulSet pods
    (those the operator indexes); None if it is absent or not one Kubernetes could have accepted."""
    if not isinstance(selector, Mapping):
        return None
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or ():
        key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if not key:
            return None
        if op in _OPERATORS and values:
            parts.append(f"{key} {_OPERATORS[op]} ({','.join(map(str, values))})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            return None
    return ",".join([*parts, STS_POD_NAME_LABEL]) if parts else None


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
        selector=label_selector(spec.get("selector")),
    )
