"""No import circle among the package's modules: every import counts, in functions too (standard library ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import plastispoof

PACKAGE = Path(plastispoof.__file__).parent


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``{dotted name: file}`` of every module under ``root`` (a package ``__init__`` is named as the package)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([package, *parts])] = path
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, from every ``import`` / ``from ... import`` in the file,
    at any depth (functions, ``if TYPE_CHECKING`` blocks included)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import mod`` imports the module pkg.mod; ``from pkg.mod import name``, the module pkg.mod
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                # the longest known module the target names (``plastispoof.runs.read_meta`` -> plastispoof.runs)
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_package_imports_itself_in_a_circle():
    found = circles(import_graph(PACKAGE, "plastispoof"))
    assert found == [], "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_check_finds_a_circle_hidden_in_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg import a\n")  # points into the circle, is not part of it
    graph = import_graph(package, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a"}
    assert circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_the_lower_layers_never_import_the_scorers_or_the_commands():
    graph = import_graph(PACKAGE, "plastispoof")
    upper = {"plastispoof.cli", "plastispoof.detectors", "plastispoof.inference", "plastispoof.onnx_runtime",
             "plastispoof.calibrate"}
    for lower in ("plastispoof.metrics", "plastispoof.bootstrap", "plastispoof.calibration", "plastispoof.runs",
                  "plastispoof.weights_hash", "plastispoof.audio", "plastispoof.scoring"):
        reachable, todo = set(), [lower]
        while todo:
            for nxt in graph[todo.pop()] - reachable:
                reachable.add(nxt)
                todo.append(nxt)
        assert not reachable & upper, f"{lower} reaches {sorted(reachable & upper)}"
