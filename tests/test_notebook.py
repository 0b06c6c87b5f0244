"""assignment/notebook.py: notebook.md parsing, solution/check cells, nbgrader metadata."""
import ast
import inspect
import re

import nbformat
import pytest
import torch
from nbgrader.preprocessors import ClearSolutions

from assignment import notebook
from assignment.notebook import (
    NOTEBOOK_MD, SOLUTIONS_PY, CellSpec, build_notebook, check_source, grading_code_cells,
    parse_cells, solution_source, visible_check_source, without_hidden_tests,
)
from assignment.contract import PROBLEM_POINTS
from solutions import vae as reference

PROBLEMS = list(PROBLEM_POINTS)
STUB_NAMESPACE = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional,
                  "Tensor": torch.Tensor, "math": __import__("math")}

FIXTURE = "\n".join(
    [
        "<!-- markdown -->",
        "# A small notebook",
        "",
        "<!-- code: setup -->",
        "```python",
        "import torch",
        "```",
        "<!-- demo: show -->",
        "",
        "```python",
        "print('demo')",
        "```",
        "",
    ]
    + [line for name in PROBLEMS for line in (f"<!-- solution: {name} -->", "",
                                               f"<!-- check: {name} -->", "")]
    + ["<!-- answer: q1 points=5 -->", "YOUR ANSWER HERE", ""]
)


def reference_nodes() -> dict[str, ast.FunctionDef | ast.ClassDef]:
    tree = ast.parse(SOLUTIONS_PY.read_text())
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in (notebook.BEGIN_SOLUTION, notebook.END_SOLUTION))


def cleared(source: str) -> str:
    """What nbgrader's ClearSolutions leaves of a solution cell."""
    cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
        "solution": True, "grade": False, "locked": False, "grade_id": "x", "schema_version": 3}})
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nb, _ = ClearSolutions().preprocess(nb, {})
    return nb.cells[0].source


# ---------------------------------------------------------------------------- parsing


def test_parse_fixture_kinds_ids_and_sources():
    cells = parse_cells(FIXTURE)
    assert [cell.kind for cell in cells[:3]] == ["markdown", "code", "demo"]
    assert cells[0] == CellSpec("markdown", "", "# A small notebook")
    assert cells[1] == CellSpec("code", "setup", "import torch")
    assert cells[2] == CellSpec("demo", "show", "print('demo')")
    assert [c.id for c in cells if c.kind == "solution"] == PROBLEMS
    assert all(c.source == "" for c in cells if c.kind in ("solution", "check"))
    assert cells[-1] == CellSpec("answer", "q1", "YOUR ANSWER HERE", 5)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("<!-- markdown -->\nhi\n<!-- cod: x -->\n```python\n1\n```", 3, "unknown cell marker"),
        ("<!-- markdown -->\nhi\n\n<!-- a comment -->", 4, "unknown cell marker"),
        ("<!-- markdown -->\nhi\n<!-- code: x -->\nprint(1)\n", 3, "```python"),
        ("<!-- code: x -->\n```python\n1\n```\n```python\n2\n```", 1, "```python"),
        ("<!-- demo: x -->\n```\n1\n```", 1, "```python"),
        ("<!-- code: x -->\n```python\n1\n```\nmore text", 1, "```python"),
        ("<!-- markdown -->\nhi\n<!-- solution: elbo -->\ndef elbo(): pass", 3, "no content"),
        ("<!-- check: elbo -->\n```python\ncheck()\n```", 1, "no content"),
        ("<!-- solution: softmax -->", 1, "not a contract problem"),
        ("<!-- answer: q1 -->\ntext", 1, "points=N"),
        ("<!-- code: x points=3 -->\n```python\n1\n```", 1, "points=N"),
        ("<!-- code -->\n```python\n1\n```", 1, "id"),
        ("<!-- markdown -->\na\n<!-- markdown -->\n\n", 3, "empty markdown"),
        ("text first\n<!-- markdown -->\na", 1, "before the first"),
        ("<!-- code: a -->\n```python\n1\n```\n<!-- demo: a -->\n```python\n2\n```", 5,
         "duplicate"),
        ("<!-- solution: elbo -->\n<!-- solution: elbo -->", 2, "duplicate"),
    ],
)
def test_parse_errors_name_the_line(text, line, message):
    with pytest.raises(ValueError, match=f"^line {line}: .*{message}"):
        parse_cells(text)


def test_every_problem_needs_a_solution_and_a_check_cell():
    text = FIXTURE.replace("<!-- check: elbo -->", "")
    with pytest.raises(ValueError, match="no check cell for elbo"):
        build_notebook(text)


# ---------------------------------------------------------------------------- sources


@pytest.mark.parametrize("name", PROBLEMS)
def test_solution_cell_is_the_reference_between_markers(name):
    source = solution_source(name)
    node = reference_nodes()[name]
    regions = 1 if isinstance(node, ast.FunctionDef) else sum(
        isinstance(item, ast.FunctionDef) for item in node.body)
    assert source.count(notebook.BEGIN_SOLUTION) == regions
    assert source.count(notebook.END_SOLUTION) == regions
    (parsed,) = ast.parse(without_markers(source)).body
    assert ast.dump(parsed) == ast.dump(node)


@pytest.mark.parametrize("name", [n for n in PROBLEMS if n != "VAE"])
def test_function_stub_keeps_signature_and_docstring_and_raises(name):
    namespace = dict(STUB_NAMESPACE)
    exec(cleared(solution_source(name)), namespace)
    stub, ref = namespace[name], getattr(reference, name)
    assert str(inspect.signature(stub)) == str(inspect.signature(ref))
    assert stub.__doc__ == ref.__doc__
    arguments = [torch.zeros(2, 3)] * len(inspect.signature(ref).parameters)
    with pytest.raises(NotImplementedError):
        stub(*arguments)


def test_vae_stub_keeps_super_init_and_method_signatures():
    source = cleared(solution_source("VAE"))
    assert "super().__init__()\n        # YOUR CODE HERE" in source
    namespace = dict(STUB_NAMESPACE)
    exec(source, namespace)
    stub = namespace["VAE"]
    assert issubclass(stub, torch.nn.Module)
    for method in ("__init__", "encode", "decode", "forward", "sample"):
        assert (inspect.signature(getattr(stub, method))
                == inspect.signature(getattr(reference.VAE, method)))
    with pytest.raises(NotImplementedError):
        stub(x_dim=8, z_dim=2, hidden_dim=4)
    model = stub.__new__(stub)
    torch.nn.Module.__init__(model)  # what the stub's own __init__ does before the region
    for call in (lambda: model.encode(torch.zeros(1, 8)), lambda: model.decode(torch.zeros(1, 2)),
                 lambda: model(torch.zeros(1, 8)), lambda: model.sample(3)):
        with pytest.raises(NotImplementedError):
            call()


def test_solution_source_of_an_undecorated_function_without_docstring(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("def f(\n    a: int = (1),\n) -> dict[str, int]:\n    # why\n    return {}\n")
    assert solution_source("f", path) == (
        "def f(\n    a: int = (1),\n) -> dict[str, int]:\n    ### BEGIN SOLUTION\n"
        "    # why\n    return {}\n    ### END SOLUTION")
    with pytest.raises(ValueError, match="no top-level def or class named 'g'"):
        solution_source("g", path)


def test_check_source_calls_the_public_check():
    # What the release keeps: the visible check; the hidden rest is a note for instructors
    # (under nbgrader autograde the cell is scored by the sandboxed grader, not run).
    assert visible_check_source("gaussian_kl") == "check_gaussian_kl(gaussian_kl)"
    assert visible_check_source("VAE") == "check_vae(VAE)"
    for name in ("gaussian_kl", "VAE"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(check_source(name))])
        assert without_hidden_tests(nb).cells[0].source == visible_check_source(name)
    hidden = check_source("VAE").split("\n")[2:-1]
    assert hidden and all(line.startswith("# ") for line in hidden)
    with pytest.raises(ValueError):
        check_source("softmax")


# ---------------------------------------------------------------------------- notebook


def nbgrader_meta(cell):
    return cell.metadata.get("nbgrader")


def test_build_notebook_metadata_of_every_cell_kind():
    nb = build_notebook(FIXTURE)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    by_id = {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c)}
    assert "nbgrader" not in nb.cells[0].metadata and nb.cells[0].cell_type == "markdown"
    locked = {"grade": False, "solution": False, "locked": True, "task": False,
              "schema_version": 3}
    assert nbgrader_meta(by_id["setup"]) == dict(locked, grade_id="setup")
    assert "vae_assignment" not in by_id["setup"].metadata
    assert nbgrader_meta(by_id["show"]) == dict(locked, grade_id="show")
    assert by_id["show"].metadata["vae_assignment"] == {"skip_when_grading": True}
    for name, points in PROBLEM_POINTS.items():
        solution, check = by_id[name], by_id["check_" + name]
        assert solution.cell_type == check.cell_type == "code"
        assert nbgrader_meta(solution) == {"solution": True, "grade": False, "locked": False,
                                           "task": False, "grade_id": name, "schema_version": 3}
        assert solution.source == solution_source(name)
        assert nbgrader_meta(check) == {"grade": True, "solution": False, "locked": True,
                                        "task": False, "points": points,
                                        "grade_id": "check_" + name, "schema_version": 3}
        assert check.source == check_source(name)
    answer = by_id["q1"]
    assert answer.cell_type == "markdown" and answer.source == "YOUR ANSWER HERE"
    assert nbgrader_meta(answer) == {"solution": True, "grade": True, "locked": False,
                                     "task": False, "points": 5, "grade_id": "q1",
                                     "schema_version": 3}


def test_build_notebook_is_reproducible():
    assert nbformat.writes(build_notebook(FIXTURE)) == nbformat.writes(build_notebook(FIXTURE))


def test_grading_code_cells_skip_demos_and_nbgrader_tests():
    nb = build_notebook(FIXTURE)
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))  # a cell a student added
    labels = [label for label, _ in grading_code_cells(nb)]
    assert labels == ["setup"] + PROBLEMS + [f"cell {len(nb.cells)}"]
    sources = dict(grading_code_cells(nb))
    assert sources["setup"] == "import torch" and sources["elbo"] == solution_source("elbo")


def test_problem_cells_out_of_contract_order_are_an_error():
    swapped = FIXTURE.replace("<!-- solution: gaussian_kl -->", "<!-- solution: TMP -->") \
        .replace("<!-- solution: reparameterize -->", "<!-- solution: gaussian_kl -->") \
        .replace("<!-- solution: TMP -->", "<!-- solution: reparameterize -->")
    with pytest.raises(ValueError, match="must follow the contract's"):
        build_notebook(swapped)


def test_what_lists_the_problems_is_written_from_the_contract():
    text = FIXTURE.replace("import torch", "from vae_checks import {check_functions}, check_all") + "\n".join(
        ["<!-- markdown -->", "These, {total_points} points in all:", "", "{points_table}", ""])
    nb = build_notebook(text)
    assert nb.cells[1].source == "from vae_checks import " + ", ".join(
        f"check_{name.lower()}" for name in PROBLEMS) + ", check_all"
    table = nb.cells[-1].source
    assert f"These, {sum(PROBLEM_POINTS.values())} points in all:" in table
    for name, points in PROBLEM_POINTS.items():
        assert f"| `{name}` | {points} |" in table
    assert "{" not in table


# ---------------------------------------------------------------------------- the real notebook.md


@pytest.fixture(scope="module")
def real_notebook():
    if not NOTEBOOK_MD.exists():
        pytest.skip("assignment/notebook.md not written yet")
    return build_notebook()


def test_real_notebook_has_one_solution_and_one_check_cell_per_problem(real_notebook):
    ids = [nbgrader_meta(c)["grade_id"] for c in real_notebook.cells if nbgrader_meta(c)]
    for name in PROBLEMS:
        assert ids.count(name) == 1 and ids.count("check_" + name) == 1


def test_real_notebook_solution_cells_equal_the_reference(real_notebook):
    nodes = reference_nodes()
    for cell in real_notebook.cells:
        meta = nbgrader_meta(cell)
        if meta and meta["solution"] and cell.cell_type == "code":
            assert notebook.BEGIN_SOLUTION in cell.source and notebook.END_SOLUTION in cell.source
            (parsed,) = ast.parse(without_markers(cell.source)).body
            assert ast.dump(parsed) == ast.dump(nodes[meta["grade_id"]])


def test_real_notebook_grading_cells_hold_no_demo(real_notebook):
    demo_ids = {c.metadata["nbgrader"]["grade_id"] for c in real_notebook.cells
                if c.metadata.get("vae_assignment", {}).get("skip_when_grading")}
    labels = [label for label, _ in grading_code_cells(real_notebook)]
    assert not demo_ids & set(labels)
    assert [label for label in labels if label in PROBLEM_POINTS] == PROBLEMS


def test_real_notebook_headings_number_the_problems_and_give_their_points(real_notebook):
    """Each problem's section opens with "## Problem N (P points)": N in contract order, P the contract's."""
    headings = [match.groups() for cell in real_notebook.cells if cell.cell_type == "markdown"
                for match in [re.match(r"## Problem (\d+) \((\d+) points?\)", cell.source)] if match]
    assert headings == [(str(number), str(PROBLEM_POINTS[name])) for number, name in enumerate(PROBLEMS, start=1)]
