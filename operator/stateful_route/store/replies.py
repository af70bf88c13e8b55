"""Reading Redis replies: clients may or may not decode responses, so text comes as bytes or str."""

from __future__ import annotations

__all__ = ["text"]


def text(value: bytes | str | int) -> str:
    """A reply as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)
