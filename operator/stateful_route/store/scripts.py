"""The Lua scripts of the link store and route table, read from ``lua/`` (package data).

One file per script, headed by its contract (KEYS, ARGV, what it returns and guarantees); the
functions scripts share live in ``lua/include/`` and are pulled in by ``--- @include "name"``
lines. ``lua/README.md`` states the include rule, which every client's loader follows so that
each sends byte-identical scripts, and what the scripts keep true; ``lua/scripts.sha1.json``
pins the SHA1 of every resolved script.

``python -m stateful_route.store.lua_tool`` rewrites that manifest, writes the resolved scripts
and runs luacheck on them.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Final

__all__ = [
    "CONFIGURE",
    "COUNT",
    "EVICT",
    "HAND_OFF",
    "IF_ABSENT",
    "LINKED",
    "LUA",
    "MANIFEST",
    "MIGRATE_FINISH",
    "MIGRATE_LINKS",
    "MIGRATE_VERIFY",
    "PHASES",
    "PLACE",
    "PLACE_MANY",
    "PRUNE",
    "PUT_PHASES",
    "READ",
    "REMOVE",
    "SCRIPTS",
    "SERVER_REPORT",
    "SET_PERSISTENT",
    "SNAPSHOT",
    "WRITE_TABLE",
    "manifest",
    "names",
    "resolve",
    "sha1",
]

LUA: Final[Traversable] = files("stateful_route.store") / "lua"
MANIFEST: Final = "scripts.sha1.json"  # in LUA

_DIRECTIVE = "--- @include"
_INCLUDE = re.compile(r'--- @include "([a-z][a-z0-9_]*)"')


def _lines(file: Traversable) -> list[str]:
    """A Lua file's lines, each with its "\\n": UTF-8, LF line ends only, ending with one."""
    text = file.read_bytes().decode("utf-8")
    if "\r" in text or not text.endswith("\n"):
        raise ValueError(f"{file.name}: Lua files have LF line ends and end with one")
    return [line + "\n" for line in text.split("\n")[:-1]]


def resolve(name: str, root: Traversable = LUA) -> str:
    """The script ``<name>.lua`` of ``root`` as Redis runs it: each ``--- @include "x"`` line
    replaced by the text of ``include/x.lua`` (the rule: lua/README.md)."""
    out: list[str] = []
    seen: set[str] = set()
    for line in _lines(root / f"{name}.lua"):
        if not line.startswith(_DIRECTIVE):
            out.append(line)
            continue
        match = _INCLUDE.fullmatch(line.removesuffix("\n"))
        if match is None:
            raise ValueError(f"{name}.lua: malformed include line {line!r}")
        included = match[1]
        if included in seen:
            raise ValueError(f"{name}.lua: includes {included!r} twice")
        seen.add(included)
        lines = _lines(root / "include" / f"{included}.lua")
        if any(part.startswith(_DIRECTIVE) for part in lines):
            raise ValueError(f"include/{included}.lua: an include file must not include")
        out.extend(lines)
    return "".join(out)


def sha1(script: str) -> str:
    """The SHA1 Redis names ``script`` by (EVALSHA, SCRIPT LOAD)."""
    return hashlib.sha1(script.encode()).hexdigest()


def names(root: Traversable = LUA) -> list[str]:
    """The names of the scripts in ``root``: its ``.lua`` files, without ``.lua``, sorted."""
    return sorted(f.name.removesuffix(".lua") for f in root.iterdir() if f.name.endswith(".lua"))


# Every script, by file name (without .lua).
SCRIPTS: Final = MappingProxyType({name: resolve(name) for name in names()})

CONFIGURE: Final = SCRIPTS["configure"]
COUNT: Final = SCRIPTS["count"]
EVICT: Final = SCRIPTS["evict"]
HAND_OFF: Final = SCRIPTS["hand_off"]
IF_ABSENT: Final = SCRIPTS["if_absent"]
LINKED: Final = SCRIPTS["linked"]
MIGRATE_FINISH: Final = SCRIPTS["migrate_finish"]
MIGRATE_LINKS: Final = SCRIPTS["migrate_links"]
MIGRATE_VERIFY: Final = SCRIPTS["migrate_verify"]
PLACE: Final = SCRIPTS["place"]
PLACE_MANY: Final = SCRIPTS["place_many"]
PHASES: Final = SCRIPTS["phases"]
PRUNE: Final = SCRIPTS["prune"]
PUT_PHASES: Final = SCRIPTS["put_phases"]
READ: Final = SCRIPTS["read"]
REMOVE: Final = SCRIPTS["remove"]
SERVER_REPORT: Final = SCRIPTS["server_report"]
SET_PERSISTENT: Final = SCRIPTS["set_persistent"]
SNAPSHOT: Final = SCRIPTS["snapshot"]
WRITE_TABLE: Final = SCRIPTS["write_table"]


def manifest() -> str:
    """The text of ``lua/scripts.sha1.json``: every script's SHA1, by name."""
    return json.dumps({name: sha1(text) for name, text in SCRIPTS.items()}, indent=2, sort_keys=True) + "\n"
