"""The flow is one-directional: no import cycle among the model, checkpoint, factory, export,
engine, interpretation and chunking modules.

Checked on the source with :mod:`ast` (nothing is imported): every ``import`` and ``from ...
import`` in ``rt_tagger/`` is an edge, also those inside functions (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:`` (annotations only). Run this file as a
script to print the graph's cycles: ``python tests/test_import_graph.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rt_tagger"

#: Units whose mutual imports must form no cycle: packages and modules of ``rt_tagger``.
UNITS = ("rt_tagger.models", "rt_tagger.checkpoint", "rt_tagger.factory", "rt_tagger.export",
         "rt_tagger.engines", "rt_tagger.interpret", "rt_tagger.chunker", "rt_tagger.explain",
         "rt_tagger.deploy", "rt_tagger.features", "rt_tagger.errors")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: set[str]) -> set[tuple[str, bool]]:
    """``(imported module, at import time?)`` for every import statement of module ``name``."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[tuple[str, bool]] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    visit(sub, top)
                continue
            if isinstance(child, ast.Import):
                found.update((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = here[:len(here) - child.level + 1] if child.level else []
                mod = ".".join(base + (child.module.split(".") if child.module else []))
                for a in child.names:  # "from pkg import submodule" imports the submodule
                    sub = f"{mod}.{a.name}"
                    found.add((sub if sub in known else mod, top))
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda))
            visit(child, inner)

    visit(ast.parse(path.read_text()), True)
    return {(m, top) for m, top in found if m.split(".")[0] == PACKAGE}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def graph(collapse: bool, import_time_only: bool) -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        for target, top in imports(name, path, set(mods)):
            if import_time_only and not top:
                continue
            # importing a.b.c runs a and a.b first (unless the importer lives inside them)
            parts = target.split(".")
            chain = [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
            for t in chain:
                if name == t or name.startswith(t + "."):
                    continue
                a, b = (unit_of(name), unit_of(t)) if collapse else (name, t)
                if a != b:
                    edges.setdefault(a, set()).add(b)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            strong(v)
    return out


def test_no_cycle_among_the_model_side_units():
    edges = graph(collapse=True, import_time_only=False)
    sub = {a: {b for b in bs if b in UNITS}
           for a, bs in edges.items() if a in UNITS}
    assert cycles(sub) == []
    # the checker sees edges: the factory depends on the checkpoint and the registry, the
    # checkpoint on the registry only, and the engines on the factory, not the other way
    assert {"rt_tagger.checkpoint", "rt_tagger.models"} <= edges["rt_tagger.factory"]
    assert edges["rt_tagger.checkpoint"] & set(UNITS) == {"rt_tagger.models",
                                                         "rt_tagger.errors",
                                                         "rt_tagger.features"}
    assert "rt_tagger.factory" in edges["rt_tagger.engines"]
    assert not edges.get("rt_tagger.models", set()) & {"rt_tagger.checkpoint",
                                                       "rt_tagger.export", "rt_tagger.engines",
                                                       "rt_tagger.interpret"}


def test_no_module_imports_itself_back_at_import_time():
    """Module by module, the imports that run when a module is imported form no cycle, so
    any module can be imported first."""
    edges = graph(collapse=False, import_time_only=True)
    mine = {m for m in modules() if unit_of(m) in UNITS}
    sub = {a: bs & mine for a, bs in edges.items() if a in mine}
    assert cycles(sub) == []


if __name__ == "__main__":
    for collapse, eager in ((True, False), (False, True), (False, False)):
        found = cycles(graph(collapse, eager))
        what = ("units, all imports" if collapse else
                "modules, import-time imports" if eager else "modules, all imports")
        print(f"{what}: {len(found)} cycle(s)")
        for c in found:
            print("   ", " <-> ".join(c))
