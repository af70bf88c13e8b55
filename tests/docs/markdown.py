"""Reading the documentation's fenced blocks, their markers and their figure links.

The conventions (docs/testing.md, "The examples in these pages"): an HTML comment on the line
before a fence says how the block is checked (``<!-- python: setup=route -->``,
``<!-- sh: run -->``); a measured number is a link to the file that holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
# The figures' files, as README.md names them and as the site includes them (benchmarks.md, reliability.md).
FIGURE_FILES = {
    "BENCHMARKS.md": ROOT / "BENCHMARKS.md",
    "RELIABILITY.md": ROOT / "RELIABILITY.md",
    "benchmarks.md": ROOT / "BENCHMARKS.md",
    "reliability.md": ROOT / "RELIABILITY.md",
}
MARKER = re.compile(r"^<!--\s*(?P<kind>[a-z]+):\s*(?P<value>.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
NUMBER = re.compile(r"^[0-9][0-9,.]*(?:\s?[a-zA-Zµ%]+)?$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, the marker before it, and its text."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    marker: tuple[str, str] | None  # (kind, value) of the comment right before the fence
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        marker = MARKER.match(before)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
        found.append(
            Block(
                path=path,
                line=i + 1,
                lang=opening["lang"],
                marker=(marker["kind"], marker["value"]) if marker else None,
                text="\n".join(lines[i + 1 : end]) + "\n",
            )
        )
        i = end + 1
    return found


def prose(path: Path) -> list[tuple[int, str]]:
    """The lines of a Markdown file outside fenced blocks, numbered from 1."""
    out: list[tuple[int, str]] = []
    inside = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            out.append((number, line))
    return out


def figure_links(line: str) -> list[tuple[str, Path]]:
    """The links of a line to a figures' file: (link text, the file)."""
    links = []
    for match in LINK.finditer(re.sub(r"`[^`]*`", "", line)):  # a link quoted as code is an example
        name = match["target"].split("#", 1)[0]
        if name in FIGURE_FILES:
            links.append((match["text"], FIGURE_FILES[name]))
    return links


def is_number(text: str) -> bool:
    """A link text that states a figure: digits, maybe a unit (``2.41 s``, ``18 min``, ``155``)."""
    return NUMBER.match(text) is not None
