"""docs/results.md is built from benchmarks/results/*.json by tools/results_page.py, so that
the figures the docs cite and the figures the benchmarks wrote cannot drift apart.

Cheap: only the standard library and the committed JSON files, no models, no clips.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"


@pytest.fixture(scope="module")
def results_page():
    spec = importlib.util.spec_from_file_location("results_page",
                                                  ROOT / "tools" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def section(page: str, stem: str) -> str:
    """The text of one file's subsection."""
    start = page.index(f"\n### {stem}\n")
    ends = [index for index in (page.find("\n### ", start + 1), page.find("\n## ", start + 1))
            if index != -1]
    return page[start:min(ends) if ends else len(page)]


def test_the_committed_page_is_what_the_results_give_now(results_page):
    built = results_page.build_page(RESULTS)
    assert PAGE.read_text() == built, (
        "docs/results.md is out of date with benchmarks/results/*.json: "
        "run python tools/results_page.py and commit docs/results.md")


def test_every_results_file_has_a_table_of_its_own_kind(results_page):
    page = PAGE.read_text()
    files = sorted(RESULTS.glob("*.json"))
    assert files
    for path in files:
        kind = results_page.kind_of(json.loads(path.read_text()))
        assert kind is not results_page.GENERIC, (
            f"{path.name} has a shape tools/results_page.py has no table for: add a Kind")
        text = section(page, path.stem)
        assert f"(#{path.stem.lower()})" in page, f"{path.name} is not in the contents"
        assert "\n| --- |" in text, f"{path.name}'s section has no table"
        assert "(no rows)" not in text, f"{path.name}'s table is empty"


def test_the_figures_come_from_the_json_files(results_page, tmp_path):
    """Change one figure in a copy of the results: the page follows it."""
    for path in RESULTS.glob("visibility_eps_single_face_*.json"):
        shutil.copy(path, tmp_path / path.name)
    (copy,) = tmp_path.glob("*.json")
    data = json.loads(copy.read_text())
    row = next(row for row in data["clips"]["single_face.mp4"]["rows"] if row["label"] == "eps4")
    before = results_page.build_page(tmp_path)
    assert f"| {row['jod_native']:.2f} |" in before
    row["jod_native"] = 7.1234
    copy.write_text(json.dumps(data))
    after = results_page.build_page(tmp_path)
    line = next(line for line in after.splitlines() if "`vdf=eps=4/255`" in line)
    assert "| 7.12 |" in line


def test_a_file_of_an_unknown_shape_is_listed_field_by_field(results_page, tmp_path):
    (tmp_path / "new_benchmark_gpu.json").write_text(json.dumps({
        "benchmark": "something new", "machine": "one H200", "seconds": 12.5,
        "cases": [{"size": "640x360", "fps": 31.25}, {"size": "1920x1080", "fps": 8.0}]}))
    page = results_page.build_page(tmp_path)
    text = section(page, "new_benchmark_gpu")
    assert "## Other results" in page
    assert "- machine: one H200" in text
    assert "- seconds: 12.50" in text
    assert "| size | fps |" in text
    assert "| 1920x1080 | 8.00 |" in text


def test_check_mode_says_whether_the_page_is_current(results_page, tmp_path, capsys):
    for path in RESULTS.glob("protect_*.json"):
        shutil.copy(path, tmp_path / path.name)
    output = tmp_path / "results.md"
    assert results_page.main(["--check", "--results", str(tmp_path),
                              "--output", str(output)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert not output.exists()
    assert results_page.main(["--results", str(tmp_path), "--output", str(output)]) == 0
    assert results_page.main(["--check", "--results", str(tmp_path),
                              "--output", str(output)]) == 0
    assert "### protect_" in output.read_text()
