"""The Go client (clients/go) embeds a copy of the resolved Lua scripts (//go:embed cannot reach
files outside its module; `go generate` writes the copy): it must be byte for byte what the
Python client sends, so both clients run the same scripts under the same SHA1."""

from __future__ import annotations

from pathlib import Path

from stateful_route.store import scripts

GO_LUA = Path(__file__).resolve().parents[2] / "clients" / "go" / "lua"
REGENERATE = "run `go generate` in clients/go"


def test_the_go_client_embeds_exactly_the_resolved_scripts():
    copied = sorted(path.stem for path in GO_LUA.glob("*.lua"))
    assert copied == sorted(scripts.SCRIPTS), REGENERATE
    for name, text in scripts.SCRIPTS.items():
        assert (GO_LUA / f"{name}.lua").read_bytes() == text.encode(), f"{name}: {REGENERATE}"


def test_the_go_client_carries_the_same_manifest():
    assert (GO_LUA / scripts.MANIFEST).read_text(encoding="utf-8") == scripts.manifest(), REGENERATE
