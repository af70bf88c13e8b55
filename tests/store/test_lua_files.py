"""The Lua files: every resolved script loads in Redis under the SHA1 its manifest pins, each
file is headed by its contract, and the include rule (store/lua/README.md) holds exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stateful_route.store import scripts

LUA = Path(str(scripts.LUA))
REGENERATE = "python -m stateful_route.store.lua_tool manifest"


def test_the_manifest_pins_every_script_as_resolved_now():
    pinned = (LUA / scripts.MANIFEST).read_text(encoding="utf-8")
    assert pinned == scripts.manifest(), f"a script changed: run `{REGENERATE}`"
    assert sorted(json.loads(pinned)) == scripts.names() == sorted(scripts.SCRIPTS)


async def test_every_script_loads_in_redis_under_its_pinned_sha1(redis):
    pinned = json.loads((LUA / scripts.MANIFEST).read_text(encoding="utf-8"))
    for name, text in scripts.SCRIPTS.items():
        assert await redis.script_load(text) == pinned[name] == scripts.sha1(text), name


def test_each_script_is_exposed_under_its_name_and_headed_by_its_contract():
    for name, text in scripts.SCRIPTS.items():
        assert getattr(scripts, name.upper()) is text
        assert name.upper() in scripts.__all__
        lines = (LUA / f"{name}.lua").read_text(encoding="utf-8").split("\n")
        if lines[0].startswith("#!lua"):  # Redis reads the flags only on the first line
            lines = lines[1:]
        head = "\n".join(line for line in lines[: lines.index("")] if line.startswith("-- "))
        assert head.startswith(f"-- {name.upper()} ("), name
        assert "KEYS[1]" in head, name
        assert "returns" in head.lower(), name


def test_scripts_list_their_includes_in_the_readme_order():
    """The order of lua/README.md, in which each include's functions are defined before use."""
    order = ["base", "layout", "shards", "pods", "placement", "waiting"]
    assert sorted(p.stem for p in (LUA / "include").glob("*.lua")) == sorted(order)
    for name in scripts.names():
        text = (LUA / f"{name}.lua").read_text(encoding="utf-8")
        included = [line.split('"')[1] for line in text.split("\n") if line.startswith("--- @include")]
        assert included == sorted(included, key=order.index), name


def lua_tree(tmp_path: Path, script: bytes, **includes: bytes) -> Path:
    (tmp_path / "include").mkdir()
    (tmp_path / "s.lua").write_bytes(script)
    for name, text in includes.items():
        (tmp_path / "include" / f"{name}.lua").write_bytes(text)
    return tmp_path


def test_an_include_line_is_replaced_by_the_file_verbatim(tmp_path):
    root = lua_tree(
        tmp_path,
        b'#!lua flags=no-writes\n-- S: a contract\n\n--- @include "a"\n--- @include "b_2"\n\nreturn f()\n',
        a=b"-- a\n\nlocal function f() return 1 end\n\n",
        b_2=b"local g = 2\n",
    )
    assert scripts.resolve("s", root) == (
        "#!lua flags=no-writes\n-- S: a contract\n\n-- a\n\nlocal function f() return 1 end\n\n"
        "local g = 2\n\nreturn f()\n"
    )
    assert scripts.names(root) == ["s"]


@pytest.mark.parametrize(
    ("script", "includes", "error"),
    [
        (b'--- @include "a" \n', {"a": b"x\n"}, "malformed include line"),
        (b"--- @include a\n", {"a": b"x\n"}, "malformed include line"),
        (b' --- @include "a"\n', {"a": b"x\n"}, None),  # not an include line: a comment
        (b'--- @include "A"\n', {"A": b"x\n"}, "malformed include line"),
        (b'--- @include "a"\n--- @include "a"\n', {"a": b"x\n"}, "includes 'a' twice"),
        (b'--- @include "a"\n', {"a": b'--- @include "b"\n', "b": b"x\n"}, "must not include"),
        (b'--- @include "a"\n', {"a": b"x"}, "end with one"),
        (b'--- @include "a"\r\n', {"a": b"x\n"}, "LF line ends"),
        (b"return 1", {}, "end with one"),
    ],
)
def test_the_include_rule_refuses_what_another_loader_might_read_otherwise(tmp_path, script, includes, error):
    root = lua_tree(tmp_path, script, **includes)
    if error is None:
        assert scripts.resolve("s", root) == script.decode()
        return
    with pytest.raises(ValueError, match=error):
        scripts.resolve("s", root)


def test_a_missing_include_is_an_error(tmp_path):
    root = lua_tree(tmp_path, b'--- @include "nowhere"\n')
    with pytest.raises(FileNotFoundError):
        scripts.resolve("s", root)
