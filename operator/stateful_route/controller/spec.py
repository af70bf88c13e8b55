"""A StatefulRoute's spec as plain data, with the CRD's defaults (pure; no I/O)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stateful_route.core import validation
from stateful_route.core.constants import DEFAULT_LINK_TTL, GROUP, KIND, VERSION
from stateful_route.core.errors import InvalidInput

__all__ = ["Listed", "OnTermination", "Rebind", "RouteName", "RouteRef", "RouteSpec"]

# (namespace, metadata.name) of a StatefulRoute object: what the operator keys its bookkeeping
# by. Its route table is named by (namespace, spec.service) instead: core.state.ServiceId.
RouteName = tuple[str, str]


class Rebind(enum.Enum):
    """When evicted users are placed again: at their next lookup, or at once by the operator."""

    LAZY = "Lazy"
    EAGER = "Eager"


class OnTermination(enum.Enum):
    """What a terminating pod that is still Ready does: keep its users, taking no new ones, until
    it reports Shutdown, stops being Ready, reaches its deletionTimestamp or is gone (Handoff);
    or lose them at once (Evict)."""

    HANDOFF = "Handoff"
    EVICT = "Evict"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What a StatefulRoute asks for."""

    stateful_set: str
    service: str
    link_ttl: int = DEFAULT_LINK_TTL
    grace: int = 10
    rebind: Rebind = Rebind.LAZY
    max_links_per_pod: int = 0
    keep_links_on_delete: bool = False
    on_termination: OnTermination = OnTermination.HANDOFF
    rollout_wait: int = 10  # seconds users evicted early in a rolling update wait for an updated pod

    @classmethod
    def parse(cls, name: str, spec: Mapping[str, Any]) -> RouteSpec:
        """Read a spec (already checked by the CRD schema; re-checked so a bad one is named)."""
        try:
            rebind = Rebind(spec.get("rebind", "Lazy"))
        except ValueError:
            raise validation.invalid("spec.rebind", "must be Lazy or Eager") from None
        try:
            on_termination = OnTermination(spec.get("onTermination", "Handoff"))
        except ValueError:
            raise validation.invalid("spec.onTermination", "must be Handoff or Evict") from None
        return cls(
            stateful_set=validation.dns_label("spec.statefulSetName", spec.get("statefulSetName")),
            service=validation.dns_label("spec.service", spec.get("service", name)),
            link_ttl=validation.integer(
                "spec.linkTTLSeconds", spec.get("linkTTLSeconds", DEFAULT_LINK_TTL), minimum=1
            ),
            grace=validation.integer("spec.unroutableGraceSeconds", spec.get("unroutableGraceSeconds", 10)),
            rebind=rebind,
            max_links_per_pod=validation.integer("spec.maxLinksPerPod", spec.get("maxLinksPerPod", 0)),
            keep_links_on_delete=validation.flag(
                "spec.keepLinksOnDelete", spec.get("keepLinksOnDelete", False)
            ),
            on_termination=on_termination,
            rollout_wait=validation.integer(
                "spec.rolloutWaitSeconds", spec.get("rolloutWaitSeconds", 10), maximum=3600
            ),
        )


@dataclass(frozen=True, slots=True)
class RouteRef:
    """A StatefulRoute object: where it is, what it asks for, and enough to post events on it."""

    namespace: str
    name: str
    uid: str
    spec: RouteSpec

    @property
    def key(self) -> RouteName:
        """(namespace, name): this object's identity."""
        return (self.namespace, self.name)

    @property
    def body(self) -> dict[str, Any]:
        """A minimal object body naming the route (for Kubernetes events about it)."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


@dataclass(frozen=True, slots=True)
class Listed:
    """The StatefulRoutes of a namespace as the API server lists them: every uid (those being
    deleted included: their own deletion handler removes their tables), and the services named
    by the routes that keep one (valid and not being deleted: one of them keeps each service)."""

    uids: frozenset[str]
    services: frozenset[str]

    @classmethod
    def parse(cls, items: Any) -> Listed:
        """From the ``items`` of a list of StatefulRoutes (plain JSON)."""
        uids: set[str] = set()
        services: set[str] = set()
        for item in items or ():
            meta, spec = item.get("metadata") or {}, item.get("spec") or {}
            uids.add(str(meta.get("uid")))
            if meta.get("deletionTimestamp"):
                continue
            try:
                services.add(RouteSpec.parse(str(meta.get("name")), spec).service)
            except InvalidInput:
                continue  # an invalid route keeps no service
        return cls(frozenset(uids), frozenset(services))
