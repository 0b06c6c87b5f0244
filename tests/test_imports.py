"""The import graph: no module imports itself back through others (no cycle), no package either
(assignment never imports autograder), and shipped code and the benchmarks never import the
project's tests."""
from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SHIPPED = ("autograder", "assignment", "solutions")
PACKAGES = (*SHIPPED, "benchmarks", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports (at the top or inside functions);
    `from package import name` counts as importing package.name when that is a module."""
    files = {module_name(p): p for top in PACKAGES for p in (PROJECT / top).rglob("*.py")}
    graph = {}
    for module, path in files.items():
        names = set()
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.update({node.module, *(f"{node.module}.{alias.name}" for alias in node.names)})
        graph[module] = {name for name in names if name in files and name != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (depth-first search), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        state[module] = "done"
        path.pop()
        return None

    return next((cycle for module in sorted(graph) if module not in state and (cycle := visit(module))), None)


def test_the_project_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    assert "autograder.scoring" in graph and "autograder.hidden_tests.test_elbo" in graph  # the walk found them
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_shipped_code_and_benchmarks_do_not_import_the_tests():
    graph = import_graph()
    offenders = {module: sorted(i for i in imported if i.startswith("tests"))
                 for module, imported in graph.items() if module.startswith((*SHIPPED, "benchmarks"))}
    assert {module: tests for module, tests in offenders.items() if tests} == {}


def test_the_packages_import_each_other_without_a_cycle():
    # The course material (assignment) is what the grader (autograder) builds on, never the other way.
    graph = import_graph()
    packages = {top: set() for top in SHIPPED}
    for module, imported in graph.items():
        top = module.split(".")[0]
        if top in packages:
            packages[top] |= {name.split(".")[0] for name in imported} & set(SHIPPED) - {top}
    assert find_cycle(packages) is None, f"package cycle: {' -> '.join(find_cycle(packages))}"
    assert "autograder" not in packages["assignment"]


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
