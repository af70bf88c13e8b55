"""Typed errors raised by every public operation."""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "LayoutTooNew",
    "NoAvailablePod",
    "NotOwner",
    "PodPending",
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


class PodPending(NoAvailablePod):
    """The user's pod was replaced early in a rolling update, before any pod of the new revision
    took users: rather than place it now on a pod the rollout replaces next (it would move
    twice), its lookups wait for an updated pod. Retry soon; after ``wait_at_most`` seconds (the
    route's ``rolloutWaitSeconds`` since the eviction) the user is placed on any available pod.
    A NoAvailablePod, so code that retries those handles it."""

    def __init__(self, namespace: str, service: str, wait_at_most: float) -> None:
        StatefulRouteError.__init__(
            self,
            f"the pod of this user of {namespace}/{service} is being replaced: retry "
            f"(placed anyway within {wait_at_most:.1f}s)",
        )
        self.namespace = namespace
        self.service = service
        self.pod = None
        self.wait_at_most = wait_at_most


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


class LayoutTooNew(StoreError):
    """The route's Redis layout is newer than this release knows: a newer release wrote it, and
    this one would miscount or lose its users, so it refused before reading or writing anything.
    Upgrade this client (see docs/upgrades.md). ``found`` is the route's layout, ``known``
    this release's."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the route's Redis layout is {found}, newer than layout {known} this release knows: "
            "upgrade stateful-route"
        )
        self.found = found
        self.known = known
