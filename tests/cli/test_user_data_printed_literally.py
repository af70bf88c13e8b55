"""Uids are user data: the CLI prints them as they are, never as Rich markup or terminal control sequences,
and a uid that looks like markup is placed, looked up and listed like any other (issue 22, point 4)."""

from __future__ import annotations

import json

import pytest

from stateful_route.cli.output import literal
from tests.cli.test_admin_commands import cli, opts, table  # noqa: F401  (the fixture)
from tests.routes import NS, SVC

HOSTILE = [
    "[/]",
    "[bold red]x",
    "[link=https://example.invalid]y[/link]",
    "\x1b[2Jcleared",
    "bell\x07\x1b]0;title\x07",
]


@pytest.mark.parametrize("uid", HOSTILE)
async def test_a_uid_holding_markup_or_escapes_is_printed_literally(table, redis_url, prefix, uid):  # noqa: F811
    code, text = await cli("place", NS, SVC, *opts(redis_url, prefix), "--", uid)
    assert code == 0, text
    pod = json.loads((await cli("lookup", NS, SVC, "--json", *opts(redis_url, prefix), "--", uid))[1])["pod"]
    assert text.strip() == f"{literal(uid)} -> pod {pod}"
    assert not {"\x1b", "\x07"} & set(text)
    for command in (["lookup", NS, SVC], ["links", NS]):
        code, text = await cli(*command, *opts(redis_url, prefix), "--", uid)
        assert code == 0, text
        # Rich may wrap a long title: compare without the white space it adds.
        assert "".join(literal(uid).split()) in "".join(text.split())
        assert not {"\x1b", "\x07"} & set(text)


def test_literal_escapes_only_what_a_terminal_would_act_on():
    assert literal("[bold]ünïcode ok[/]") == "[bold]ünïcode ok[/]"
    assert literal("a\x1b[31mb\nc\x00") == "a\\x1b[31mb\\nc\\x00"


async def test_a_one_line_answer_is_never_wrapped_whatever_the_uid_length(table, redis_url, prefix):  # noqa: F811
    uid = "user-" + "a" * 200  # longer than any terminal CliRunner pretends to have
    code, text = await cli("place", NS, SVC, *opts(redis_url, prefix), "--", uid)
    assert code == 0, text
    (line,) = text.splitlines()
    assert line.startswith(f"{uid} -> pod ")
