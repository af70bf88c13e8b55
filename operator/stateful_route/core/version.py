"""This release's version, as installed (semantic versioning; CHANGELOG.md says what each release changed)."""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["VERSION"]

VERSION: str = version("stateful-route")
