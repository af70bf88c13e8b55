"""How the operator runs: what the command line sets, with the defaults the Deployment uses."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from stateful_route.core.urls import redact_url

__all__ = ["OperatorConfig"]


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

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"OperatorConfig(redis_url={redact_url(self.redis_url)!r}, {shown})"
