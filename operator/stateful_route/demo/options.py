"""What the demo is asked to do (``stateful-route demo`` flags)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DemoOptions"]


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does: how long, how many pods and users, which random story."""

    duration: float = 45.0
    pods: int = 6
    users: int = 3000
    seed: int = 1
