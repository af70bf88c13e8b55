"""The pre-commit hooks run exactly the checks of `make lint`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]


def make_lint() -> list[str]:
    """The commands of the Makefile's ``lint`` target, with $(BIN) spelled as .venv/bin."""
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None, "the Makefile has no lint target"
    return [line.strip().replace("$(BIN)", ".venv/bin") for line in recipe.group(1).splitlines()]


def test_pre_commit_runs_what_make_lint_runs():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [hook["entry"] for hook in hooks] == make_lint()
    assert all(hook["language"] == "system" and hook["pass_filenames"] is False for hook in hooks)
