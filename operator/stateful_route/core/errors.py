"""Typed errors raised by every public operation."""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "NoAvailablePod",
    "NotOwner",
    "StatefulRouteError",
    "StoreError",
    "StoreUnavailable",
]


class StatefulRouteError(Exception):
    """Base of every error stateful-route raises on purpose."""


class InvalidInput(StatefulRouteError, ValueError):
    """An argument is malformed; ``field`` names it. Nothing was written."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NoAvailablePod(StatefulRouteError):
    """No pod of the service accepts new users right now; or ``pod``, the one asked for, is not a
    routable pod of the service."""

    def __init__(self, namespace: str, service: str, *, pod: int | None = None) -> None:
        if pod is None:
            super().__init__(f"no available pod for service {namespace}/{service}")
        else:
            super().__init__(f"pod {pod} is not a routable pod of service {namespace}/{service}")
        self.namespace = namespace
        self.service = service
        self.pod = pod


class NotOwner(StatefulRouteError):
    """A route table write was refused: the table belongs to another StatefulRoute (``claimed``),
    or to none any more (deleted, or lost with Redis's data). Nothing was written."""

    def __init__(self, namespace: str, service: str, *, claimed: bool) -> None:
        whose = "another route" if claimed else "no route"
        super().__init__(f"the table of {namespace}/{service} belongs to {whose}")
        self.namespace = namespace
        self.service = service
        self.claimed = claimed


class StoreError(StatefulRouteError):
    """Redis answered, but not as the link store expects (corrupt data, script error)."""


class StoreUnavailable(StoreError):
    """Redis did not answer within the timeout, or the connection failed."""
