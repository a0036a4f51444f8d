"""The runtime's house rules, checked on the source (issue #13): the flow is one-directional
(a module imports its own stage and earlier ones only), the runtime modules import each other
in no cycle, and no private name is imported across modules. The import walker is
tests/test_import_graph.py's (ast, lazy imports included, ``TYPE_CHECKING`` left out); this
file adds the GUI package and the stages of docs/architecture.md."""
from __future__ import annotations

from test_import_graph import ROOT, cycles, imports
from test_import_graph import modules as package_modules

#: The flow, in order. Foundations first (errors, the config and message types, signals).
STAGES = [("errors", "config", "messages", "shutdown"), ("ring", "sources", "demo"), ("features",),
          ("chunker",), ("engines", "models", "checkpoint", "factory", "export", "interpret"),
          ("aggregator",), ("stream", "pipeline", "tagger"), ("sinks",), ("monitor",),
          ("gui_launch", "gui"), ("run", "preflight", "cluster"), ("cli", "__main__", "explain")]
#: Not stages of the flow: offline tools (weight conversion, Triton deployment) and data.
TOOLS = ("convert", "deploy", "training", "weights", "_core")


def modules() -> dict:
    mods = package_modules()
    for path in sorted((ROOT / "gui").rglob("*.py")):  # installs as rt_tagger.gui
        parts = ["rt_tagger", "gui", *path.relative_to(ROOT / "gui").with_suffix("").parts]
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def edges(mods: dict) -> dict[str, set[str]]:
    return {m: {t for t, _ in imports(m, p, set(mods))} for m, p in mods.items()}


def stage(module: str) -> int | None:
    parts = module.split(".")
    return next((i for i, names in enumerate(STAGES) if len(parts) > 1 and parts[1] in names), None)


def test_every_runtime_module_has_a_stage():
    assert sorted({m.split(".")[1] for m in modules() if "." in m and stage(m) is None} - set(TOOLS)) == []


def test_no_module_imports_a_later_stage():
    later = sorted((a, b) for a, bs in edges(modules()).items() for b in bs
                   if stage(a) is not None and stage(b) is not None and stage(b) > stage(a))
    assert later == []


def test_no_import_cycle_among_runtime_modules():
    mods = modules()
    runtime = {m for m in mods if stage(m) is not None}
    sub = {a: {b for b in bs if b in runtime and not a.startswith(b + ".")}
           for a, bs in edges(mods).items() if a in runtime}
    assert cycles(sub) == []


def test_no_private_name_is_imported_across_modules():
    import ast

    mods = modules()
    found = []
    for m, path in mods.items():
        if stage(m) is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                found += [(m, a.name) for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__") and a.name != "_core"]
    assert found == []  # (_core: the private native module, wrapped by ring.py and features/)
