"""Tools for the Lua files (not imported by the package, so ``python -m`` runs it cleanly).

``python -m stateful_route.store.lua_tool manifest`` rewrites ``lua/scripts.sha1.json`` (after
changing a script or an include; a test compares it with the scripts);
``python -m stateful_route.store.lua_tool resolve DIR`` replaces the ``.lua`` files of DIR with
the resolved scripts, ``DIR/<name>.lua``, byte for byte what Redis runs;
``python -m stateful_route.store.lua_tool lint`` (``make lint``) resolves them into
``build/lua`` and runs luacheck there with the repository's ``.luacheckrc``, from its root.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from stateful_route.store import scripts

LINT_DIR = Path("build/lua")


def write(folder: Path) -> None:
    """Replace the ``.lua`` files of ``folder`` with every resolved script."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.lua"):
        stale.unlink()
    for name, text in scripts.SCRIPTS.items():
        (folder / f"{name}.lua").write_bytes(text.encode())


def lint(folder: Path) -> int:
    """luacheck's exit code on the resolved scripts; 2, saying how to get it, when luacheck is absent
    (the lint is part of `make test`: an unlinted script must not pass as linted)."""
    write(folder)
    luacheck = shutil.which("luacheck")
    if luacheck is None:
        print("luacheck is not on PATH (Debian: apt-get install lua-check; macOS: brew install luacheck)")
        return 2
    command = [luacheck, "--config", ".luacheckrc", "--formatter", "plain", str(folder)]
    code = subprocess.run(command, check=False).returncode
    if code == 0:
        print(f"luacheck: {len(scripts.SCRIPTS)} resolved scripts in {folder}, no findings")
    return code


def main(argv: list[str]) -> int:
    match argv:
        case ["manifest"]:
            path = Path(str(scripts.LUA / scripts.MANIFEST))
            path.write_text(scripts.manifest(), encoding="utf-8")
            print(f"wrote {path}")
        case ["resolve", folder]:
            write(Path(folder))
        case ["lint"]:
            return lint(LINT_DIR)
        case _:
            usage = "usage: python -m stateful_route.store.lua_tool manifest | resolve DIR | lint"
            print(usage, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
