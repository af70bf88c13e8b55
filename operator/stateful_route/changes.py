"""Messages on a namespace's change channel: what changed, so clients act at once."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Change", "evicted", "parse", "table_changed", "unlinked"]


@dataclass(frozen=True, slots=True)
class Change:
    """A decoded message: ``kind`` is 't' (route table), 'u' (one link removed), 'e' (pod evicted)."""

    kind: str
    service: str
    subject: str = ""  # the uid for 'u', the pod index for 'e'


def table_changed(service: str) -> str:
    """The route table of ``service`` changed: refetch it."""
    return f"t|{service}"


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
    service, _, subject = rest.partition("|")
    if kind not in ("t", "u", "e") or not service:
        return None
    return Change(kind, service, subject)
