"""ServerDriver: what a pod embeds to report its load and routing state and to confirm links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from stateful_route.core import validation
from stateful_route.core.errors import InvalidInput, NoAvailablePod, StatefulRouteError
from stateful_route.core.state import RoutingState
from stateful_route.pod.handoff import Before, HandOffResult, hand_off_users
from stateful_route.store import changes, keys, scripts
from stateful_route.store.connection import AnyRedis
from stateful_route.store.faults import guarded
from stateful_route.store.links import LinkStore

__all__ = ["HandOffResult", "ServerDriver"]


class ServerDriver:
    """The pod side: one pod (``pod_index``) of one route (``namespace``, ``service``).

    Reports and links are written only into a route that has a table: while it has none
    (deleted, or not written yet), they raise NoAvailablePod and write nothing, so nothing a pod
    writes after its route was deleted outlives the deletion.

    A report belongs to the pod instance that made it. Give ``pod_uid`` (the pod's
    ``metadata.uid``, e.g. from the downward API): then the report applies only while the route
    table names this very pod, and one made before the operator wrote the pod into the table is
    kept and applied when it does, never to the pod it replaced nor to a later one. Without it the
    report applies to whichever pod the table names at ``pod_index`` now, and is dropped when the
    operator writes another pod there (or a pod where none was)."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        namespace: str,
        service: str,
        pod_index: int,
        prefix: str = "sr",
        timeout: float = 1.0,
        pod_uid: str | None = None,
    ) -> None:
        self.pod_index = validation.pod_index(pod_index, "pod_index")
        self.pod_uid = None if pod_uid is None else validation.pod_uid(pod_uid)
        keyring = keys.Keyring(prefix)
        self._keys = keyring.route(namespace, service)
        self._store = LinkStore(redis, keyring, timeout=timeout)
        self._report = redis.register_script(scripts.SERVER_REPORT)

    async def __aenter__(self) -> Self:
        # Nothing is registered yet: the service joins its namespace's set with the first write
        # its table accepts, so a pod of a route without a table (deleted, or not yet written)
        # leaves no trace of it.
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def set_load_state(self, load: int) -> None:
        """Report this pod's load (added to its link count when choosing the best pod)."""
        await self._send(routing="", load=str(validation.load(load)))

    async def set_routing_state(self, state: RoutingState) -> None:
        """Report Ready / DenyNewCall (no new users) / Shutdown (evict); an annotation may be stricter."""
        if not isinstance(state, RoutingState):
            raise validation.invalid("state", f"must be a RoutingState, got {state!r:.40}")
        await self._send(routing=str(int(state)), load="")

    async def set_linked_pod(self, uid: str) -> int | None:
        """Make the user's link point here, persistently; returns the previous pod or None."""
        _, previous = await self._store.link_persistent(
            self._keys, validation.uid(uid), self.pod_index, only_if_free=False
        )
        await self._register()  # after the write: a route without a table is refused first
        return previous

    async def try_set_linked_pod(self, uid: str) -> tuple[bool, int]:
        """Link the user here persistently unless another pod holds a persistent link:
        ``(True, this pod)`` or ``(False, the holder)``."""
        stored, holder = await self._store.link_persistent(
            self._keys, validation.uid(uid), self.pod_index, only_if_free=True
        )
        await self._register()
        if stored:
            return True, self.pod_index
        assert holder is not None  # the script names the holder whenever it refuses
        return False, holder

    async def remove_linked_pod(self, uid: str, keep_seconds: float = 0) -> bool:
        """Remove the user's link (wherever it points), optionally keeping a temporary one for
        ``keep_seconds`` so a reconnecting user returns to the same pod. True if a link existed."""
        keep = validation.seconds("keep_seconds", keep_seconds)
        return await self._store.unlink(self._keys, validation.uid(uid), expected=None, keep=keep) is not None

    async def remove_linked_pod_with_id(self, uid: str, pod: int, keep_seconds: float = 0) -> bool:
        """Compare-and-delete: remove the link only if it points to ``pod``. True if removed."""
        validation.uid(uid)
        validation.pod_index(pod)
        keep = validation.seconds("keep_seconds", keep_seconds)
        return await self._store.unlink(self._keys, uid, expected=pod, keep=keep) is not None

    async def hand_off(self, uid: str) -> int | None:
        """Move the user's link from this pod to the best available other pod, in one atomic
        compare-and-swap (only if it still points here), and tell every gateway at once (they
        drop their cached link). The link keeps its kind: persistent stays persistent, temporary
        keeps its remaining TTL. Returns the new pod, or None if the user was not linked here
        (or moved meanwhile) or no other pod is available (the link then stays here).

        Push or persist the user's state before calling this (see ``hand_off_all``'s ``before``).
        Gateways drop their cached link when the hand-off's message reaches them (typically well
        under a millisecond; at the latest when their view is re-read, within its 1 s bound): a
        request a gateway answered from its cache in between still comes here, so bounce it (the
        user is no longer yours: this call returned where it went)."""
        done = await self._store.hand_off(self._keys, validation.uid(uid), self.pod_index)
        return None if done is None else done.pod

    async def linked_users(self) -> AsyncIterator[str]:
        """The users linked to this pod now (persistent and live temporary links), each once,
        read in batches; users linked or unlinked while iterating may or may not appear."""
        async for uid in self._store.linked_users(self._keys, self.pod_index):
            yield uid

    async def hand_off_all(
        self,
        *,
        concurrency: int = 16,
        before: Before | None = None,
        within: float = 30.0,
        retry_every: float = 0.25,
    ) -> HandOffResult:
        """Hand every user of this pod off, then report Shutdown: what a pod does when told to stop.

        Reports DenyNewCall first (no new users arrive meanwhile), then for each linked user,
        ``concurrency`` at a time, awaits ``before(uid)`` (persist or push its state) and moves
        its link (``hand_off``). ``before`` is awaited once per user, always before its link moves
        (again for a user found unlinked, then linked here again: its state here is new); if it
        raises, that user's link stays (counted in ``failed``). Users who find no other pod
        available are retried until ``within`` seconds have passed, unless only outdated pods
        could take them (early in a rolling update, when no updated pod can start before this one
        goes): then it stops at once, and they are ``waiting`` (evicted after Shutdown, they wait
        for an updated pod: the route's ``rolloutWaitSeconds``). ``within`` bounds the whole
        call: at it, a ``before`` still running is cancelled and its user stays (``left``, the
        users linked here at the end, counted in Redis).
        Shutdown is reported in every case (within the store's timeout), so the operator evicts
        whoever is ``left`` (and rebinds them if the route is Eager). A Redis fault raises
        StoreUnavailable/StoreError (after trying to report Shutdown).
        """
        workers = validation.integer("concurrency", concurrency, minimum=1, maximum=10_000)
        seconds = validation.seconds("within", within)
        pause = validation.seconds("retry_every", retry_every, minimum=0.001)
        if before is not None and not callable(before):
            raise InvalidInput("before", f"must be an async callable, got {type(before).__name__}")
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            # The deadline bounds the whole call; Shutdown below is reported in any case.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._register()
                    await self.set_routing_state(RoutingState.DENY_NEW_CALL)
            result = await hand_off_users(
                self._store,
                self._keys,
                self.pod_index,
                users=self.linked_users,
                before=before,
                concurrency=workers,
                deadline=deadline,
                retry_every=pause,
            )
        except StatefulRouteError:
            # Still report Shutdown if Redis lets us (the operator then evicts whoever is left);
            # the caller gets the first fault either way.
            with contextlib.suppress(StatefulRouteError):
                await self.set_routing_state(RoutingState.SHUTDOWN)
            raise
        await self.set_routing_state(RoutingState.SHUTDOWN)
        return result

    async def _send(self, *, routing: str, load: str) -> None:
        route_keys = self._keys
        changed = await guarded(
            self._report(
                keys=[
                    route_keys.pods,
                    route_keys.reports,
                    route_keys.version,
                    route_keys.config,
                    route_keys.available,
                    route_keys.instances,
                ],
                args=[
                    self.pod_index,
                    routing,
                    load,
                    route_keys.channel,
                    changes.table_changed(route_keys.service),
                    route_keys.pod_links,
                    self.pod_uid or "",
                ],
            ),
            self._store.timeout,
        )
        if changed < 0:
            raise NoAvailablePod(route_keys.namespace, route_keys.service)
        await self._register()

    async def _register(self) -> None:
        await self._store.services.add(self._keys)
