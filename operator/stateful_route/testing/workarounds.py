"""Workarounds for interpreter bugs that threads in the emulated cluster can trigger."""

from __future__ import annotations

import sys
import traceback

__all__ = ["plain_traceback_carets"]


def plain_traceback_carets() -> None:
    """Stop tracebacks from parsing source lines on CPython 3.11 before 3.11.8.

    There, two threads building ASTs at once can fail with "SystemError: AST constructor
    recursion depth mismatch" (CPython gh-106905). 3.11's traceback formatting calls
    ``ast.parse`` for its ``^~~~`` carets, so an exception logged in the operator's thread
    while the main thread formats another one is enough. Without the parse, carets are just
    plain underlines; nothing else changes.
    """
    if (3, 11) <= sys.version_info < (3, 11, 8) and hasattr(
        traceback, "_extract_caret_anchors_from_line_segment"
    ):
        traceback._extract_caret_anchors_from_line_segment = lambda segment: None
