"""The layout of the package: rooms (the subpackages of ``vdf_stream`` and its top-level
modules) whose imports run one way, and files short enough to read.

Every import is counted, at module level or inside a function (a lazy import is still an
arrow between rooms). Run this file as a script to print the arrows between rooms and any
cycle: ``python tests/test_layout.py``.
"""

from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "vdf_stream"
MAX_LINES = 800


def _sources() -> dict[str, Path]:
    """Module name -> file, for vdf_stream/ and filters/ (installed as vdf_stream.filters).
    A link inside vdf_stream/ (a development checkout's vdf_stream/filters) is not
    followed: filters/ is read where it lies."""
    modules = {}
    for folder, name in ((ROOT / PACKAGE, PACKAGE), (ROOT / "filters", f"{PACKAGE}.filters")):
        for here, folders, files in os.walk(folder):
            folders[:] = sorted(item for item in folders if item != "__pycache__"
                                and not os.path.islink(os.path.join(here, item)))
            for file in sorted(files):
                if not file.endswith(".py"):
                    continue
                relative = Path(here, file).relative_to(folder).with_suffix("")
                parts = [name, *relative.parts]
                if parts[-1] == "__init__":
                    parts.pop()
                modules[".".join(parts)] = Path(here, file)
    return modules


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The vdf_stream modules ``module`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            # "from .. import assets" imports a module; "from .x import name" a name
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in known)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def room(module: str) -> str | None:
    """``vdf_stream.media.sinks`` -> ``media``; ``vdf_stream.api`` -> ``api``; the package
    itself (its version and lazy entry points) is no room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def arrows() -> dict[tuple[str, str], list[str]]:
    """(from room, to room) -> the files that make that arrow."""
    modules = _sources()
    known = set(modules)
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path in modules.items():
        source = room(module)
        for target in _imported(module, path, known):
            target_room = room(target)
            if source and target_room and target_room != source:
                found[(source, target_room)].append(str(path.relative_to(ROOT)))
    return found


def cycles(edges) -> list[list[str]]:
    """The strongly connected groups of more than one room (Tarjan)."""
    graph = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
        graph.setdefault(target, set())
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _describe(groups, edges) -> str:
    lines = []
    for group in groups:
        lines.append("cycle: " + ", ".join(group))
        for (source, target), files in sorted(edges.items()):
            if source in group and target in group:
                lines.append(f"  {source} -> {target}: {', '.join(sorted(set(files)))}")
    return "\n".join(lines)


def test_the_walker_sees_module_and_function_level_imports():
    edges = arrows()
    assert ("cli", "batch") in edges  # module level (cli/batch.py)
    assert ("api", "pipeline") in edges
    assert ("batch", "evaluation") in edges  # inside execute_eval only
    assert ("filters", "protection") in edges  # filters/ is read as vdf_stream.filters


def test_cli_and_batch_are_in_no_cycle_and_point_down():
    edges = arrows()
    involved = [group for group in cycles(edges) if {"cli", "batch"} & set(group)]
    assert not involved, _describe(involved, edges)
    for lower in ("batch", "pipeline", "media", "protection", "evaluation", "models",
                  "filters", "live"):
        assert (lower, "cli") not in edges, edges[(lower, "cli")]
    for lower in ("pipeline", "media", "protection", "evaluation", "models", "filters"):
        assert (lower, "batch") not in edges, edges[(lower, "batch")]


def test_no_cycle_between_rooms():
    edges = arrows()
    groups = cycles(edges)
    assert not groups, _describe(groups, edges)


def test_protection_imports_no_room_above_it():
    edges = arrows()
    above = [(target, edges[("protection", target)])
             for target in ("evaluation", "cli", "batch", "live")
             if ("protection", target) in edges]
    assert not above


def test_no_source_file_is_over_800_lines():
    long = {}
    for path in sorted(set(_sources().values())):
        with open(path, encoding="utf-8") as file:
            count = sum(1 for _ in file)
        if count > MAX_LINES:
            long[str(path.relative_to(ROOT))] = count
    assert not long, long


if __name__ == "__main__":
    found = arrows()
    for (source, target), files in sorted(found.items()):
        print(f"{source:>11} -> {target:<11} ({len(set(files))} files)")
    groups = cycles(found)
    print(_describe(groups, found) if groups else "no cycle between rooms")
    sys.exit(1 if groups else 0)
