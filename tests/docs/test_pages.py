"""The documentation holds as written: its shell commands, its figures and its module list.

Conventions in docs/testing.md ("The examples in these pages"). Every fenced block names its
language; every ```sh block says how it is checked; every measured number links to the file that
holds it; docs/layout.md lists exactly the package's modules.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.docs.markdown import DOCS, ROOT, Block, blocks, figure_links, is_number, pages, prose

SH_MARKERS = {"run", "dry-run", "needs cluster", "needs docker"}
PACKAGE = ROOT / "operator" / "stateful_route"


def sh_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page) if block.lang == "sh"]


def commands(block: Block) -> list[str]:
    """The block's commands, one a line, comments and blank lines left out."""
    lines = (line.split(" #", 1)[0].strip() for line in block.text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_every_fence_names_its_language() -> None:
    bare = [block.where for page in pages() for block in blocks(page) if not block.lang]
    assert bare == [], "name the language (sh, python, text, yaml, go) of each block"


def test_no_block_swallows_a_heading() -> None:
    """A fence left open turns the rest of the page into code: its headings vanish from the site."""
    swallowed = [
        f"{block.where}: {line}"
        for page in pages()
        for block in blocks(page)
        for line in block.text.splitlines()
        if block.lang not in ("sh", "python", "text", "yaml") and line.startswith("## ")
    ]
    assert swallowed == [], "a fenced block holds a Markdown heading: close the fence before it"


def test_every_shell_block_says_how_it_is_checked() -> None:
    for block in sh_blocks():
        assert block.marker is not None, f"{block.where}: no <!-- sh: … --> before it"
        assert block.marker[0] == "sh", f"{block.where}: no <!-- sh: … --> before it"
        assert block.marker[1] in SH_MARKERS, (
            f"{block.where}: {block.marker[1]!r} is none of {sorted(SH_MARKERS)}"
        )
    assert {block.marker[1] for block in sh_blocks() if block.marker} >= {"run", "dry-run", "needs cluster"}


@pytest.mark.e2e  # processes of its own
@pytest.mark.parametrize(
    "block", [b for b in sh_blocks() if b.marker == ("sh", "run")], ids=lambda block: block.where
)
def test_the_commands_run(block: Block) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands(block):
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, f"{block.where}: `{command}` exited {run.returncode}:\n{run.stderr}"
        assert run.stdout.strip(), f"{block.where}: `{command}` printed nothing"


def _markers() -> set[str]:
    registered = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
        "markers"
    ]
    return {line.split(":", 1)[0] for line in registered}


def _check_pytest(words: list[str], where: str) -> None:
    words = words[1:]
    while words:
        word = words.pop(0)
        if word == "-m":
            names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", words.pop(0))) - {"and", "or", "not"}
            assert names <= _markers(), f"{where}: unknown markers {names - _markers()}"
        elif not word.startswith("-"):
            assert (ROOT / word.split("::", 1)[0]).exists(), f"{where}: no {word}"


def _check_make(words: list[str], where: str) -> None:
    targets = [word for word in words[1:] if "=" not in word and not word.startswith("-")]
    assert targets, f"{where}: which target?"
    run = subprocess.run(
        ["make", "-n", *targets], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, f"{where}: make -n {' '.join(targets)}: {run.stderr}"


@pytest.mark.e2e  # make -n is a process of its own
@pytest.mark.parametrize(
    "block", [b for b in sh_blocks() if b.marker == ("sh", "dry-run")], ids=lambda block: block.where
)
def test_the_long_commands_name_real_targets_tests_and_markers(block: Block) -> None:
    """What takes minutes is checked without running it: make knows the target (``make -n``), and a
    pytest command names paths that exist and markers that are registered."""
    for command in commands(block):
        words = shlex.split(command)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # SR_SCENARIOS=200 make …
            words.pop(0)
        if words[0] == "make":
            _check_make(words, block.where)
        elif words[0].endswith("pytest"):
            _check_pytest(words, block.where)
        else:
            pytest.fail(
                f"{block.where}: `{command}` is neither make nor pytest: mark the block run or needs …"
            )


def test_every_figure_link_names_a_number_its_file_holds() -> None:
    checked = 0
    for page in pages():
        for number, line in prose(page):
            for text, source in figure_links(line):
                if is_number(text):
                    checked += 1
                    assert text in source.read_text(), (
                        f"{page.name}:{number}: {text!r} is not in {source.name}"
                    )
    assert checked >= 5


def test_a_measurement_links_to_where_it_was_measured() -> None:
    for page in pages():
        for number, line in prose(page):
            if re.search(r"\bmeasured\b", line, re.IGNORECASE) and not line.lstrip().startswith("|"):
                assert figure_links(line), (
                    f"{page.name}:{number}: a measurement links to BENCHMARKS.md or RELIABILITY.md: {line!r}"
                )


def test_nothing_points_outside_the_repository() -> None:
    for page in pages():
        text = page.read_text()
        assert "../shared" not in text, page.name
        assert "DESIGN.md" not in text, page.name


def _documented_layout() -> dict[str, set[str]]:
    """docs/layout.md's tree: each package (``  core/``) and the modules under it (``    errors``)."""
    tree = next(b for b in blocks(DOCS / "layout.md") if b.text.startswith("operator/stateful_route/"))
    layout: dict[str, set[str]] = {}
    package = ""
    for line in tree.text.splitlines()[1:]:
        name = line.split()[0]
        if line.startswith("    "):
            layout[package].add(name)
        elif name.endswith("/"):
            package = name.rstrip("/")
            layout[package] = set()
    return layout


def test_the_layout_lists_every_module_and_no_other() -> None:
    actual = {
        folder.name: {module.stem for module in folder.glob("*.py") if module.stem != "__init__"}
        for folder in PACKAGE.iterdir()
        if (folder / "__init__.py").exists()
    }
    assert _documented_layout() == actual


def test_every_page_is_in_the_site() -> None:
    """mkdocs fails on a page left out of the nav; this names the page without building."""
    config = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.glob("*.md"):
        assert re.search(rf"^\s*- (?:[^:\n]+: )?{re.escape(page.name)}$", config, re.MULTILINE), page.name
