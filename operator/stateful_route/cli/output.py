"""Where the CLI prints, and how what users stored is made safe to print.

Uids, services and Redis replies are user data: they are printed literally, never read as Rich markup
(``[bold]``, ``[/]``) and never passed to the terminal as control sequences.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["err", "literal", "out"]

out = Console(markup=False)
err = Console(stderr=True, markup=False)


def literal(value: object) -> str:
    """``value`` as text with each non-printable character escaped (``\\x1b``, ``\\n``), so that a stored
    uid cannot recolour, move the cursor of or clear the terminal it is printed on."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
