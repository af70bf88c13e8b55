"""What kmock's emulator lacks for the real ``kubectl``: discovery, list kinds, selectors, tables.

kmock 0.8 serves enough of the API for kopf, but kubectl reads more of it: the core group's
discovery must name its group version ``v1`` (kmock says ``/v1``, so kubectl finds no ``pods``),
subresources must carry no short names (else kubectl warns that ``sroute`` could mean
``statefulroutes/status``), list answers need their ``kind`` (else "Object 'Kind' is missing"),
``kubectl describe`` lists events with a field selector, ``kubectl get -w`` needs a JSON watch
stream, and ``kubectl get`` prints the server's tables (a CRD's printer columns, pods' status).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kmock
from kmock import Response  # type: ignore[attr-defined]  # exported by kmock, missing from its __all__

__all__ = ["Column", "KubectlEmulator", "age", "matches_selector"]

# What the API server allows on a subresource such as ``pods/status``.
SUBRESOURCE_VERBS = ["get", "patch", "update"]
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True)
class Column:
    """One column of a server-side table: a CRD's ``additionalPrinterColumns`` entry."""

    name: str
    type: str
    path: str  # a plain dotted JSONPath such as ``.status.summary``
    priority: int = 0
    description: str = ""


POD_COLUMNS = [
    Column("Name", "string", ".metadata.name"),
    Column("Ready", "string", ""),
    Column("Status", "string", ""),
    Column("Restarts", "integer", ""),
    Column("Age", "date", ".metadata.creationTimestamp"),
    # Shown with `-o wide`, as the API server's own pod table has them.
    Column("IP", "string", "", priority=1),
    Column("Node", "string", "", priority=1),
    Column("Nominated Node", "string", "", priority=1),
    Column("Readiness Gates", "string", "", priority=1),
]


class KubectlEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, answering discovery, lists and watches the way kubectl expects."""

    async def _handle(self, request: kmock.Request) -> Any:
        # The API server stamps every new object; kubectl shows its age.
        meta = request.data.get("metadata") if isinstance(request.data, dict) else None
        if request.method.value == "POST" and isinstance(meta, dict):
            meta.setdefault("creationTimestamp", _now())
        return await super()._handle(request)

    async def _serve_version(self, request: kmock.Request) -> Any:
        payload = cast(dict[str, Any], await super()._serve_version(request))
        payload["groupVersion"] = _api_version(request)
        for entry in payload["resources"]:
            if "/" in entry["name"]:  # a subresource: only its verbs, no names of its own
                entry.update(shortNames=[], categories=[], verbs=SUBRESOURCE_VERBS, singularName="")
        return payload

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = cast(dict[str, Any], await super()._serve_list(request))
        items = [item for item in payload["items"] if _selected(item, request.params)]
        if _wants_table(request):
            return self._table(request, items)
        return {
            "apiVersion": _api_version(request),
            "kind": f"{self._kind(request.resource)}List",
            "metadata": payload["metadata"],
            "items": items,
        }

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj = cast(dict[str, Any], await super()._serve_fetch(request))
        return self._table(request, [obj]) if _wants_table(request) else obj

    async def _serve_watch(self, request: kmock.Request) -> Any:  # type: ignore[override]
        # kubectl refuses a watch stream that is not declared JSON; a Response sets the header.
        return Response(headers={"Content-Type": "application/json"}, payload=self._watch(request))

    async def _watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        table = _wants_table(request)
        # kubectl lists, prints, then watches from the list's version; kmock replays every object
        # as ADDED first, which kubectl would print twice. Other clients (kopf) get the replay.
        skip = self._count(request) if table and request.params.get("resourceVersion") else 0
        async for event in cast(AsyncIterator[Any], super()._serve_watch(request)):
            if not isinstance(event, dict):  # the empty chunk that opens the stream
                yield event
                continue
            obj = event["object"]
            if not _selected(obj, request.params):
                continue
            if skip:
                skip -= 1
                continue
            yield {"type": event["type"], "object": self._table(request, [obj])} if table else event

    def _count(self, request: Any) -> int:
        return sum(
            1
            for (resource, namespace, _), obj in self.objects.items()
            if resource == request.resource
            and request.namespace in (None, namespace)
            and not obj.deleted
            and _selected(obj.raw, request.params)
        )

    def _kind(self, resource: Any) -> str:
        return str(self.resources[resource].kind or resource.plural.capitalize())

    def _columns(self, resource: Any) -> list[Column]:
        if resource.group == "" and resource.plural == "pods":
            return POD_COLUMNS
        key = (kmock.resource(CRDS), None, f"{resource.plural}.{resource.group}")
        crd = self.objects[key].raw if key in self.objects and not self.objects[key].deleted else {}
        name = Column("Name", "string", ".metadata.name")
        for version in crd.get("spec", {}).get("versions", []):
            if version.get("name") == resource.version:
                printed = [
                    Column(
                        c["name"], c["type"], c["jsonPath"], c.get("priority", 0), c.get("description", "")
                    )
                    for c in version.get("additionalPrinterColumns", [])
                ]
                return [name, *printed]
        return [name, Column("Age", "date", ".metadata.creationTimestamp")]

    def _table(self, request: Any, items: list[Mapping[str, Any]]) -> dict[str, Any]:
        """A ``meta.k8s.io/v1`` Table, as the API server answers ``kubectl get``."""
        columns = self._columns(request.resource)
        pods = columns is POD_COLUMNS
        return {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "Table",
            "metadata": {"resourceVersion": "..."},
            "columnDefinitions": [
                {"name": c.name, "type": c.type, "format": "name" if c.name == "Name" else "",
                 "description": c.description, "priority": c.priority}
                for c in columns
            ],
            "rows": [
                {
                    "cells": _pod_cells(item) if pods else [_cell(item, c) for c in columns],
                    "object": {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                               "metadata": item.get("metadata", {})},
                }
                for item in items
            ],
        }  # fmt: skip


def _pod_cells(pod: Mapping[str, Any]) -> list[Any]:
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    containers = len(pod.get("spec", {}).get("containers", [])) or 1
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "Pending")
    restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses", []))
    gates = pod.get("spec", {}).get("readinessGates") or []
    return [meta.get("name", ""), f"{containers if ready else 0}/{containers}", phase, restarts,
            age(meta.get("creationTimestamp")), status.get("podIP") or "<none>",
            pod.get("spec", {}).get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            f"0/{len(gates)}" if gates else "<none>"]  # fmt: skip


def _cell(obj: Mapping[str, Any], column: Column) -> Any:
    value: Any = obj
    for part in filter(None, column.path.split(".")):
        value = value.get(part) if isinstance(value, Mapping) else None
    if column.type == "date":
        return age(value)
    return value  # a missing value is a null cell, as the API server sends it (kubectl prints it blank)


def age(stamp: str | None, now: datetime.datetime | None = None) -> str:
    """How kubectl shows an object's age: ``42s``, ``3m12s``, ``17m``, ``5h``, ``3d``."""
    if not stamp:
        return "<unknown>"
    born = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.datetime.now(datetime.UTC)) - born).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 48:
        return f"{hours}h"
    return f"{days}d"


def matches_selector(obj: Mapping[str, Any], selector: str, *, fields: bool) -> bool:
    """Whether ``obj`` passes a field selector (``involvedObject.name=room``, dotted paths) or a
    label selector: equality terms (``app=game``, ``app!=game``), ``app`` (exists), ``!app``
    (does not) and set-based terms (``app in (game,lobby)``, ``app notin (game)``), as the API
    server reads them (a parity test compares the two)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in _terms(selector):
        if not fields and (found := _SET_TERM.fullmatch(term)):
            key, operator, values = found.group(1), found.group(2), found.group(3)
            wanted = {v.strip() for v in values.split(",")}
            # notin also passes objects without the label, as the API server has it.
            if (labels.get(key) in wanted) == (operator == "notin"):
                return False
            continue
        if "=" not in term:  # a label selector's ``key`` (exists) or ``!key`` (does not)
            if (term.lstrip("!") in labels) == term.startswith("!"):
                return False
            continue
        negate = "!=" in term
        key, _, wanted_value = term.replace("!=", "=").replace("==", "=").partition("=")
        if fields:
            value: Any = obj
            for part in key.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
        else:
            value = labels.get(key)
        if (("" if value is None else str(value)) == wanted_value) == negate:
            return False
    return True


_SET_TERM = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)\s*")


def _terms(selector: str) -> list[str]:
    """The selector's terms: split on the commas outside a set's parentheses."""
    terms, depth, term = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(term)
            term = ""
        else:
            term += char
    return [t.strip() for t in [*terms, term] if t.strip()]


def _selected(obj: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    return matches_selector(obj, params.get("fieldSelector", ""), fields=True) and matches_selector(
        obj, params.get("labelSelector", ""), fields=False
    )


def _wants_table(request: Any) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _api_version(request: kmock.Request) -> str:
    """``v1`` for the core group, ``group/version`` otherwise."""
    assert request.resource is not None  # only Kubernetes requests reach the handlers using it
    group, version = request.resource.group, request.resource.version
    return f"{group}/{version}" if group else str(version)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
