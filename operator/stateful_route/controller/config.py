"""How the operator runs: what the command line sets, with the defaults the Deployment uses."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from stateful_route.core import validation
from stateful_route.core.urls import redact_url

__all__ = ["MIN_PEERING_LIFETIME", "OperatorConfig", "check_watch"]

# kopf renews a replica's peering entry every lifetime - 5..10 s (at least every second): a
# shorter lifetime would leave too little room for a slow renewal.
MIN_PEERING_LIFETIME = 10

# A Kubernetes object name (a KopfPeering's): a DNS-1123 subdomain.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs (from the command line)."""

    redis_url: str = field(repr=False)  # may hold a password: shown redacted by __repr__
    prefix: str = "sr"
    redis_timeout: float = 5.0
    reconcile_interval: float = 1.0  # timer per route: grace expiry, pods' own Shutdown reports
    status_interval: float = 2.0  # the status mirror is written at most this often per route
    kubeconfig: str | None = None
    metrics_port: int | None = None  # Prometheus /metrics (0: a free port); off when None
    census_interval: float = 30.0  # how often each route's pods are listed to catch a stale index
    census_clock_margin: float = 60.0  # only pods older than this can be proved deleted
    # With peering: how long a replica counts as alive after its last keep-alive (sent 5-10 s
    # before that), so how long a crashed active replica holds its standbys back. kopf's default.
    peering_lifetime: int = 60

    def __post_init__(self) -> None:
        """Every field but the URL (``check_url``; connecting reports it) checked, InvalidInput
        naming it, before anything starts: a bad value would otherwise surface only as a kopf
        activity failing and retrying every minute."""
        validation.prefix(self.prefix)
        validation.seconds("redis_timeout", self.redis_timeout, minimum=0.001)
        for name in ("reconcile_interval", "status_interval", "census_interval"):
            validation.seconds(name, getattr(self, name), minimum=0.001)
        validation.seconds("census_clock_margin", self.census_clock_margin)
        validation.integer(
            "peering_lifetime", self.peering_lifetime, minimum=MIN_PEERING_LIFETIME, maximum=3600
        )
        if self.kubeconfig is not None and (type(self.kubeconfig) is not str or not self.kubeconfig):
            raise validation.invalid("kubeconfig", "must be a non-empty path")
        if self.kubeconfig is not None and not os.path.isfile(self.kubeconfig):
            # Else kopf would retry logging in every minute, the operator up but doing nothing.
            raise validation.invalid("kubeconfig", "no such file")
        if self.metrics_port is not None:
            validation.integer("metrics_port", self.metrics_port, maximum=65535)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"OperatorConfig(redis_url={redact_url(self.redis_url)!r}, {shown})"


def check_watch(
    namespaces: Sequence[str], peering: str | None, priority: int | None, liveness: str | None
) -> None:
    """Raise InvalidInput naming the option unless the operator's watch options are usable:
    namespaces are DNS-1123 labels (as every route's namespace), a peering name is a Kubernetes
    object name, a priority an int, a liveness endpoint an http:// URL with a host."""
    for namespace in namespaces:
        validation.dns_label("namespace", namespace)
    if peering is not None and (
        type(peering) is not str or len(peering) > 253 or not _DNS_SUBDOMAIN.fullmatch(peering)
    ):
        raise validation.invalid(
            "peering", f"must be a DNS-1123 subdomain (a Kubernetes name), got {peering!r:.80}"
        )
    if priority is not None:
        validation.integer("priority", priority, minimum=-validation.MAX_INT, maximum=validation.MAX_INT)
    if liveness is not None:
        problem = "must be an http://HOST[:PORT]/PATH URL"
        try:
            url = urlsplit(liveness)
            url.port  # noqa: B018 (parsing the port is the check)
        except ValueError:
            raise validation.invalid("liveness", f"{problem}, got {liveness!r:.80}") from None
        if url.scheme != "http" or not url.hostname:
            raise validation.invalid("liveness", f"{problem}, got {liveness!r:.80}")
