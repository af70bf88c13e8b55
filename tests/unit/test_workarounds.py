"""The CPython 3.11.7 workaround: formatting a traceback builds no AST, and still says where."""

from __future__ import annotations

import ast
import sys
import traceback

import pytest

from stateful_route.testing.workarounds import plain_traceback_carets


@pytest.mark.skipif(not (3, 11) <= sys.version_info < (3, 11, 8), reason="only these versions need it")
def test_formatting_a_traceback_parses_no_source(mocker):
    plain_traceback_carets()
    parse = mocker.spy(ast, "parse")
    try:
        {}["a"]["b"]
    except KeyError:
        text = traceback.format_exc()
    assert parse.call_count == 0
    assert "KeyError: 'a'" in text
    assert '{}["a"]["b"]' in text
