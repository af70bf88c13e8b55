"""The StatefulRoute status mirror, built from the route table and the pods (pure)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from stateful_route.controller.pods import PodRecord
from stateful_route.controller.spec import RouteRef
from stateful_route.core.state import PodPhase, PodState, RouteSnapshot
from stateful_route.store.eviction import Eviction

__all__ = ["build_invalid", "build_refused", "build_status", "pod_state", "rfc3339", "store_unavailable"]


def rfc3339(seconds: float) -> str:
    """Unix seconds as an RFC 3339 UTC time, to the second."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def pod_state(pod: PodState | None, phase: PodPhase | None) -> str:
    """One word for a pod: Terminating or Outdated (from the operator), else NotReady, else its
    routing state; ``gone`` when the table no longer has it."""
    if pod is None:
        return "gone"
    if pod.routable and phase is not None and phase.label is not None:
        return phase.label
    return pod.routing.label if pod.alive else "NotReady"


def build_status(
    route: RouteRef,
    records: Iterable[PodRecord],
    snapshot: RouteSnapshot,
    last_eviction: Eviction | None,
    phases: Mapping[int, PodPhase] | None = None,
) -> dict[str, Any]:
    """``status`` for ``kubectl get sroute``: pods, counts, best pod, last eviction, Ready condition.

    ``ready`` is what Kubernetes says; ``routable``/``available``/``routingState`` are what the
    router uses (a NotReady pod within its grace stays routable, taking no new users); ``state``
    says Terminating (with ``terminatingUntil``) or Outdated where ``phases`` say so. A row leaves
    out what it does not know (``name`` of a pod Kubernetes no longer shows, ``routingState`` of a
    pod the table no longer has, ``terminatingUntil`` of a pod not terminating) rather than
    writing null.
    """
    phases = phases or {}
    by_index = {rec.ordinal: rec for rec in records if not rec.terminating} | {
        rec.ordinal: rec for rec in records if rec.terminating and rec.ordinal not in snapshot.pods
    }
    pods = []
    for index in sorted(set(snapshot.pods) | set(by_index)):
        state = snapshot.pods.get(index)
        rec = by_index.get(index)
        phase = phases.get(index, PodPhase())
        until = phase.terminating_until
        row = {
            "index": index,
            "name": rec.name if rec else None,
            "ready": rec.ready if rec else False,
            "routable": bool(state and state.routable),
            "available": index in snapshot.available,
            "routingState": state.routing.label if state else None,
            "state": pod_state(state, phase),
            "terminatingUntil": None if until is None else rfc3339(until),
            "outdated": phase.outdated,
            "load": state.load if state else 0,
            "links": snapshot.links.get(index, 0),
        }
        # Absent, not null: the API server drops nulls inside the list's objects on a merge
        # patch, so a null would differ from what is stored and kopf would log "Merge-patching
        # finished with inconsistencies" after every status write.
        pods.append({key: value for key, value in row.items() if value is not None})
    routable = sum(1 for i in snapshot.pods if snapshot.pods[i].routable)
    available = len(snapshot.available)
    status: dict[str, Any] = {
        "service": route.spec.service,
        "pods": pods,
        "totalPods": len(pods),
        "routablePods": routable,
        "availablePods": available,
        "summary": f"{routable}/{len(pods)}",
        "links": sum(snapshot.links.values()),
        "bestPod": snapshot.best,
        "outdatedPods": sorted(i for i, phase in phases.items() if phase.outdated),
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if available else "False",
                "reason": "PodsAvailable" if available else "NoAvailablePod",
                "message": f"{available} of {len(pods)} pods take new users",
            }
        ],
    }
    if last_eviction is not None:
        status["lastEviction"] = {
            "pod": last_eviction.pod,
            "reason": last_eviction.reason,
            "links": last_eviction.removed,
            "rebound": last_eviction.rebound,
            "time": last_eviction.at,
            "message": last_eviction.message,
        }
    return status


def store_unavailable(error: str) -> dict[str, Any]:
    """The status part written when the operator cannot reach Redis: a ``Ready=False`` condition
    (reason ``RedisUnavailable``); the rest of the status is the last one known."""
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "RedisUnavailable",
                "message": f"the operator cannot reach Redis: {error}"[:300],
            }
        ]
    }


def _nothing_routed(reason: str, message: str) -> dict[str, Any]:
    """``status`` of a route that routes nothing, with the reason in its Ready condition."""
    return {
        "pods": [],
        "totalPods": 0,
        "routablePods": 0,
        "availablePods": 0,
        "summary": "0/0",
        "links": 0,
        "bestPod": None,
        "conditions": [{"type": "Ready", "status": "False", "reason": reason, "message": message}],
    }


def build_invalid(problem: str) -> dict[str, Any]:
    """``status`` of a route whose spec the operator cannot use: nothing routed, and why."""
    return _nothing_routed("InvalidSpec", problem[:300])


def build_refused(route: RouteRef, message: str) -> dict[str, Any]:
    """``status`` of a route refused because another route keeps its service: nothing routed."""
    return {"service": route.spec.service, **_nothing_routed("ServiceConflict", message)}
