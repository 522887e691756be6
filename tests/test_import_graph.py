"""The package's import graph keeps its layers: lower packages never import upper ones, and no module circles.

Parsed with `ast` (no imports run). For layers every import counts, those inside functions too: a lazy import still
ties a lower layer to an upper one. For circles, the imports run when a module loads (its top-level statements).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "nas"
UPPER = ("nas.search", "nas.report", "nas.cli", "nas.agent", "nas.clinical")
"""What drives a search or serves a result; the layers below must not reach up into them."""
LOWER = ("nas.tasks", "nas.spaces", "nas.hardware", "nas.models", "nas.data", "nas.train", "nas.compress",
         "nas.export", "nas.spec", "nas.metrics", "nas.supernet")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, lazy: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree) if lazy else tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # a name, or a submodule
    return {name for name in found if name == "nas" or name.startswith("nas.")}


def graph(*, lazy: bool = True) -> nx.DiGraph:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for target in imports(path, lazy=lazy):
            while target not in modules and "." in target:  # `from nas.x import y` names the module nas.x
                target = target.rsplit(".", 1)[0]
            if target != name and target in modules and target != "nas":
                g.add_edge(name, target)
    return g


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_lower_layers_never_import_upper_ones():
    upward = [(a, b) for a, b in graph().edges if within(a, LOWER) and within(b, UPPER)]
    assert upward == []


def test_no_import_circles_between_modules():
    g = graph(lazy=False)
    # A package's __init__ re-exporting its own modules is not a circle between ideas.
    g.remove_edges_from([(a, b) for a, b in list(g.edges) if b.startswith(a + ".") or a.startswith(b + ".")])
    assert list(nx.simple_cycles(g)) == []
