"""The user docs point at things that exist: README's set-up commands are the ones CI runs,
every relative link reaches a file (and a heading, when it names one), every source path
named in the docs is in the tree. Cheap: text only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
        *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
SOURCE_PATH = re.compile(r"`((?:vdf_stream|filters|benchmarks|tools|tests)/[\w/.-]+\.py)`")


def anchors(markdown: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    found, seen = set(), {}
    fenced = False
    for line in markdown.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        text = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_readme_shows_the_set_up_commands_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = (ROOT / "README.md").read_text().splitlines()
    for marker in ("# README: install", "# README: test"):
        command = ci[ci.index(marker) + 1]
        assert command in readme, f"README.md does not show .ci/run's {marker!r}: {command}"


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue                                   # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name} links to {target}: no such file"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name} links to {target}: no such heading"


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_source_file_named_exists(page):
    for path in SOURCE_PATH.findall(page.read_text()):
        assert (ROOT / path).exists(), f"{page.name} names {path}, which is not in the tree"
