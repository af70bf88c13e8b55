"""Messages on a namespace's change channel: what changed, so clients act at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Change", "evicted", "parse", "table_changed", "unlinked"]


@dataclass(frozen=True, slots=True)
class Change:
    """A decoded message: ``kind`` is 't' (route table), 'u' (one link removed), 'e' (pod evicted)."""

    kind: str
    service: str
    subject: str = ""  # the uid for 'u', the pod index for 'e'
    routable: frozenset[int] | None = None  # for 't': the routable pods right after the change
    at: float | None = None  # for 't': when it happened (Redis clock, seconds since the epoch)
    version: int | None = None  # for 't': the route's version after the change


def table_changed(
    service: str, routable: Iterable[int] | None = None, at: float | None = None, version: int | None = None
) -> str:
    """The route table of ``service`` changed. Lua scripts append ``|<routable>|<ms>|<version>``
    themselves (this builds the prefix they are given, or a whole message for tests)."""
    if routable is None:
        return f"t|{service}"
    stamp = "" if at is None else str(int(at * 1000))
    return f"t|{service}|{','.join(str(i) for i in sorted(routable))}|{stamp}|{version or ''}"


def unlinked(service: str, uid: str) -> str:
    """A user's link was removed or moved: drop it from caches."""
    return f"u|{service}|{uid}"


def evicted(service: str, pod: int) -> str:
    """Every link to ``pod`` was removed: drop cached links to it and refetch the table."""
    return f"e|{service}|{pod}"


def parse(data: bytes | str) -> Change | None:
    """Decode a message; None for anything this version does not understand."""
    text = data.decode() if isinstance(data, bytes) else data
    kind, _, rest = text.partition("|")
    service, bar, subject = rest.partition("|")
    if kind not in ("t", "u", "e") or not service:
        return None
    if kind != "t":
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
