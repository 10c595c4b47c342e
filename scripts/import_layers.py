"""Count the project's import arrows, the ones that run up the layers, and the import circles.

Usage: python scripts/import_layers.py [--verbose]   (standard library only)

An arrow is "file A imports file B" for the project's own Python files outside tests/ (every
import statement counts: module level, in function bodies and under TYPE_CHECKING, as
import-linter counts them). A package's __init__ imported only on the way to a submodule is not
an arrow. LAYERS, top to bottom, is read from the import-linter contract in pyproject.toml: an
arrow from a lower layer to a higher one is reported as upward. Circles are
the strongly connected components of two or more files.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"tests", ".venv", "var", "scripts", "build", "node_modules"}

# Top to bottom, as the import-linter layers contract in pyproject.toml names them ("|" and ":"
# separate the siblings of one layer), under the project's code that is no package: the
# benchmark and Alembic's scripts. A module belongs to the layer of its longest named prefix.
EXTRA_TOP = ["bench | db.migrations"]


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    return [*EXTRA_TOP, *layers]


LAYERS = contract_layers()


def module_files(root: Path) -> dict[str, Path]:
    """Every project module by dotted name (a package by its own name, for its __init__)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in SKIP_DIRS or parts[0].startswith("."):
            continue
        names = list(parts[:-1])
        if path.name != "__init__.py":
            names.append(path.stem)
        if not names or names == ["siyu"]:
            continue  # the root package's __init__ is no layer's
        found[".".join(names)] = path
    return found


def imported_names(path: Path, module: str, modules: dict[str, Path]) -> Iterator[str]:
    """The project modules a file imports: `from pkg import sub` names the submodule when one
    exists, otherwise the longest module prefix of the name is what gets imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _longest_module(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield name if name in modules else _longest_module(base, modules)


def _longest_module(name: str, modules: dict[str, Path]) -> str:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def arrows(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) pairs between distinct project modules."""
    return {
        (module, target)
        for module, path in modules.items()
        for target in imported_names(path, module, modules)
        if target and target != module
    }


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, entry in enumerate(LAYERS):
        for prefix in (p.strip() for p in entry.replace(":", "|").split("|")):
            if module == prefix or module.startswith(f"{prefix}."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


def circles(modules: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {m: [] for m in modules}
    for a, b in sorted(edges):
        graph[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every arrow too")
    args = parser.parse_args()
    modules = module_files(ROOT)
    edges = arrows(modules)
    unplaced = sorted(m for m in modules if layer_of(m) is None)
    upward = sorted(
        (a, b)
        for a, b in edges
        if (la := layer_of(a)) is not None and (lb := layer_of(b)) is not None and lb < la
    )
    rings = circles(sorted(modules), edges)
    print(f"import arrows between files: {len(edges)}")
    if args.verbose:
        for a, b in sorted(edges):
            print(f"  {a} -> {b}")
    print(f"arrows from a lower layer up: {len(upward)}")
    for a, b in upward:
        print(f"  {modules[a].relative_to(ROOT)} -> {modules[b].relative_to(ROOT)}")
    print(f"import circles: {len(rings)}")
    for ring in rings:
        print("  " + " , ".join(str(modules[m].relative_to(ROOT)) for m in ring))
    if unplaced:
        print(f"modules in no layer: {len(unplaced)}")
        for module in unplaced:
            print(f"  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
