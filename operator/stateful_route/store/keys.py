"""Redis key and channel names: one hash tag per (namespace, service), so every script is slot-local.

Layout under ``<prefix>:{<ns>/<svc>}:``: ``l:<uid>`` a user's link (string; ``"<pod>"`` with an
expiry when temporary, ``"<pod>p"`` without one when persistent), ``w:<uid>`` a user evicted
early in a rolling update, waiting for an updated pod (the pod it left, expiring with the wait);
the users linked to a pod in
shards ``ps:<pod>:<k>`` (small sorted sets scored by expiry in ms, ``+inf`` when persistent; a
uid's shard follows from its hash, see ``lua/include/shards.lua``), ``ps:<pod>`` the pod's
non-empty shards (scored by their earliest expiry), ``ps:n`` each pod's link count and ``ps:w``
its shard count (hashes);
``avail`` the available pods (sorted set scored by links + load, the head is the best pod),
``avail:held`` the pods held back from new users only as outdated by a rollout (set, written with
the table), ``avail:spare`` those of them that would be available otherwise (sorted set scored like
``avail``; placement takes its head when no pod is available),
``ps:exp`` when each pod's earliest temporary link expires (sorted set, to sweep expired links out
of scores), ``pods`` the route table,
``srv`` the pods' own reports (each the report of the pod instance ``ids`` names at its index),
``srv:new`` reports of pods the table does not name yet (``"<pod uid>,<routing>,<load>"``, one per
index, applied when the table is written with that uid), ``cfg`` the route's policy (``cap``,
``ttl``, ``keep``: whether its links outlive the table) and ``owner`` (the uid of the
StatefulRoute that writes the table), ``ids`` the pod instance behind each index (uid and the
operator's note), ``ver`` the table's version, ``phase`` what the operator says of pods beyond
the table (a hash: terminating with a deadline, outdated; shown by displays, and read by
hand-offs, which never move a user onto an outdated pod);
``layout`` in ``cfg`` the layout the route was written with (docs/redis.md, "Layout versions"). Layout 1's
keys, read only by the migration: ``p:<pod>`` each pod's users in one sorted set, ``p:exp`` the
pods' earliest expiries, ``phase`` a JSON string.
Namespaces and services are DNS-1123 labels and the uid comes last, so no two inputs build the
same key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache

from stateful_route.core import validation
from stateful_route.core.state import ServiceId

__all__ = ["Keyring", "RouteKeys", "changes_channel", "glob_escape", "services_key", "services_pattern"]


@dataclass(frozen=True, slots=True)
class RouteKeys:
    """Every key of one route (namespace, service); all share the hash tag ``{ns/svc}``."""

    namespace: str
    service: str
    base: str
    links: str  # prefix of link keys: links + uid
    waiting: str  # prefix of the marks of users waiting for an updated pod: waiting + uid
    pod_links: str  # prefix of per-pod keys: pod_links + str(pod) the pod's shards, + ":<k>" one shard
    link_counts: str  # links held in each pod's shards
    shard_counts: str  # shards of each pod
    available: str  # available pods scored by links + load
    held: str  # pods held back only as outdated (written with the table)
    spare: str  # held pods that would be available otherwise, scored by links + load
    expiries: str  # pods scored by their earliest temporary link's expiry (ms)
    pods: str
    reports: str
    early_reports: str  # reports of pods the table does not name yet, applied when it does
    config: str
    instances: str
    version: str
    phases: str
    channel: str
    legacy_pods: str  # layout 1: prefix of each pod's one sorted set of users, legacy_pods + str(pod)
    legacy_expiries: str  # layout 1: the pods' earliest expiries

    @classmethod
    def build(cls, prefix: str, namespace: str, service: str) -> RouteKeys:
        """Keys of a route; arguments must already be validated. (``scripts.PLACE`` builds the same
        names from ``base``, to send fewer arguments on the hot path.)"""
        base = f"{prefix}:{{{namespace}/{service}}}:"
        return cls(
            namespace=namespace,
            service=service,
            base=base,
            links=base + "l:",
            waiting=base + "w:",
            pod_links=base + "ps:",
            link_counts=base + "ps:n",
            shard_counts=base + "ps:w",
            available=base + "avail",
            held=base + "avail:held",
            spare=base + "avail:spare",
            expiries=base + "ps:exp",
            pods=base + "pods",
            reports=base + "srv",
            early_reports=base + "srv:new",
            config=base + "cfg",
            instances=base + "ids",
            version=base + "ver",
            phases=base + "phase",
            channel=changes_channel(prefix, namespace),
            legacy_pods=base + "p:",
            legacy_expiries=base + "p:exp",
        )

    def link(self, uid: str) -> str:
        """The key holding ``uid``'s link in this route."""
        return self.links + uid

    def pod(self, index: int) -> str:
        """The shards of pod ``index``'s users: a sorted set of shard numbers by earliest expiry."""
        return self.pod_links + str(index)

    def legacy_pod(self, index: int) -> str:
        """Layout 1's one sorted set of pod ``index``'s users (until the route is migrated)."""
        return self.legacy_pods + str(index)

    def shard(self, index: int, shard: int) -> str:
        """One shard of pod ``index``'s users (uid scored by expiry in ms, ``+inf`` persistent)."""
        return f"{self.pod_links}{index}:{shard}"


def services_key(prefix: str, namespace: str) -> str:
    """The set of services that have a route in ``namespace`` (for ``get_link_service``)."""
    return f"{prefix}:ns:{namespace}:services"


def services_pattern(prefix: str) -> str:
    """A SCAN pattern matching the service set of every namespace."""
    return services_key(glob_escape(prefix), "*")


def glob_escape(literal: str) -> str:
    """``literal`` matched literally by a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in literal)


def changes_channel(prefix: str, namespace: str) -> str:
    """The pub/sub channel on which route-table changes and evictions of a namespace are announced."""
    return f"{prefix}:changes:{namespace}"


class Keyring:
    """Validates (namespace, service) once and memoises its keys (bounded, LRU)."""

    def __init__(self, prefix: str, size: int = 4096) -> None:
        self.prefix = validation.prefix(prefix)
        self._routes: LRUCache[ServiceId, RouteKeys] = LRUCache(size)

    def route(self, namespace: str, service: str) -> RouteKeys:
        """Keys of a route; raises InvalidInput naming a bad namespace or service."""
        try:
            return self._routes[(namespace, service)]
        except (KeyError, TypeError):
            pass
        validation.dns_label("namespace", namespace)
        validation.dns_label("service", service)
        found = self._routes[(namespace, service)] = RouteKeys.build(self.prefix, namespace, service)
        return found

    def services(self, namespace: str) -> str:
        """The set of services with a route in ``namespace``."""
        return services_key(self.prefix, validation.dns_label("namespace", namespace))
