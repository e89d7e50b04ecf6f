"""Tests for the package's import graph: lib/batchsize/*.py, imports inside functions included."""
import ast
from pathlib import Path

import batchsize

PACKAGE = Path(batchsize.__file__).parent
MODULES = {p.stem for p in PACKAGE.glob("*.py")}


def imported_modules(path):
    """The package's own modules that the file at path imports, anywhere in it (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] != "batchsize":
                continue
            parts = (node.module or "").split(".")[(0 if node.level else 1):]  # the part inside the package
            if parts and parts[0]:
                found.add(parts[0])
            else:  # `from . import a, b` or `from batchsize import a, b`
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("batchsize."))
    return (found & MODULES) - {path.stem}


def import_graph():
    return {p.stem: imported_modules(p) for p in PACKAGE.glob("*.py")}


def find_cycle(graph):
    """One cycle of the graph as a list of nodes [a, b, ..., a], or None."""
    state = {}  # node -> "open" while on the current path, "done" after

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_are_read_also_inside_functions(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("from . import steps\nfrom .memory import x\n\ndef f():\n    from .plots import PALETTE\n"
                      "    import batchsize.grads\n    from batchsize import hardware\n    import numpy\n")
    assert imported_modules(source) == {"steps", "memory", "plots", "grads", "hardware"}


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    assert graph["memory"] and graph["advise"]  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_steps_is_imported_by_the_modules_that_step_and_imports_none_of_them():
    graph = import_graph()
    assert graph["steps"] <= {"_checks"}
    for name in ("memory", "parallel", "hardware", "advise", "ddp", "grads"):
        assert "steps" in graph[name], name
