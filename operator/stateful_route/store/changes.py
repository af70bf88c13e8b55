"""Messages on a namespace's change channel: what changed, so clients act at once."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from stateful_route.store.replies import text

__all__ = ["Change", "ChangeKind", "evicted", "parse", "table_changed", "unlinked"]


class ChangeKind(enum.StrEnum):
    """What a message announces; the value is its first field on the wire (Lua writes it too)."""

    TABLE = "t"  # the route table changed
    UNLINKED = "u"  # one user's link was removed or moved
    EVICTED = "e"  # every link to one pod was removed


@dataclass(frozen=True, slots=True)
class Change:
    """A decoded message."""

    kind: ChangeKind
    service: str
    subject: str = ""  # the uid for UNLINKED, the pod index for EVICTED
    routable: frozenset[int] | None = None  # for TABLE: the routable pods right after the change
    at: float | None = None  # for TABLE: when it happened (Redis clock, seconds since the epoch)
    version: int | None = None  # for TABLE: the route's version after the change


def table_changed(
    service: str, routable: Iterable[int] | None = None, at: float | None = None, version: int | None = None
) -> str:
    """The route table of ``service`` changed. Lua scripts append ``|<routable>|<ms>|<version>``
    themselves (this builds the prefix they are given, or a whole message for tests)."""
    if routable is None:
        return f"{ChangeKind.TABLE}|{service}"
    stamp = "" if at is None else str(int(at * 1000))
    return (
        f"{ChangeKind.TABLE}|{service}|{','.join(str(i) for i in sorted(routable))}|{stamp}|{version or ''}"
    )


def unlinked(service: str, uid: str) -> str:
    """A user's link was removed or moved: drop it from caches."""
    return f"{ChangeKind.UNLINKED}|{service}|{uid}"


def evicted(service: str, pod: int) -> str:
    """Every link to ``pod`` was removed: drop cached links to it and refetch the table."""
    return f"{ChangeKind.EVICTED}|{service}|{pod}"


def parse(data: bytes | str) -> Change | None:
    """Decode a message; None for anything this version does not understand."""
    tag, _, rest = text(data).partition("|")
    service, bar, subject = rest.partition("|")
    try:
        kind = ChangeKind(tag)
    except ValueError:
        return None
    if not service:
        return None
    if kind is not ChangeKind.TABLE:
        return Change(kind, service, subject)
    if not bar:
        return Change(kind, service)
    pods, _, rest = subject.partition("|")
    stamp, _, version = rest.partition("|")
    try:
        return Change(
            kind,
            service,
            routable=frozenset(int(i) for i in pods.split(",") if i),
            at=int(stamp) / 1000 if stamp else None,
            version=int(version) if version else None,
        )
    except ValueError:
        return Change(kind, service)
