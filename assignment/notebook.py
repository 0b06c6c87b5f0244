"""Build the nbgrader source notebook from `notebook.md` and the reference `solutions/vae.py`.

`notebook.md` is a sequence of cells, each opened by a marker line (an HTML comment alone
on its line) and running until the next marker:

    <!-- markdown -->                  markdown text
    <!-- code: ID -->                  read-only code, also run when grading (one ```python block)
    <!-- demo: ID -->                  read-only code students run; skipped when grading
    <!-- solution: NAME -->            (empty) the reference def/class NAME from solutions/vae.py
    <!-- check: NAME -->               (empty) the graded check cell of problem NAME (scored
                                       by the sandboxed grader under nbgrader autograde)
    <!-- answer: ID points=N -->       a manually graded markdown answer; text is the placeholder

Solution cells hold the reference with each function body (each method body, for the VAE)
between `### BEGIN SOLUTION` / `### END SOLUTION`; nbgrader's ClearSolutions replaces every
region by `raise NotImplementedError()`, so signatures and docstrings stay in the stubs.

Every contract problem (assignment/contract.py) has one solution cell and one check cell, in
the contract's order. What depends on the list of problems is written by the builder, from
the contract, where these stand in a markdown or code cell:

    {check_functions}                  the check functions, comma-separated (for the setup cell's import)
    {points_table}                     a markdown table of the problems and their points
    {total_points}                     the points of all problems together
"""
from __future__ import annotations

import ast
import copy
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from assignment.contract import CONTRACT, PROBLEM_POINTS, PROBLEMS, TOTAL_POINTS, problem

ASSIGNMENT = "vae"
SOURCE_NOTEBOOK_NAME = "vae.ipynb"

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_MD = ROOT / "assignment" / "notebook.md"
SOLUTIONS_PY = ROOT / "solutions" / "vae.py"

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "### END HIDDEN TESTS"
SKIP_MARK = "vae_assignment"  # cell metadata key: {"skip_when_grading": true} on demo cells

CELL_KINDS = ("markdown", "code", "demo", "solution", "check", "answer")
_MARKER = re.compile(r"^<!--(.*)-->$")
_MARKER_BODY = re.compile(
    r"^(?P<kind>[a-z]+)(?::\s*(?P<id>[A-Za-z0-9_-]+))?(?:\s+points=(?P<points>\d+))?$"
)
_FENCE_OPEN = "```python"
_FENCE = "```"
_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


@dataclass(frozen=True)
class CellSpec:
    kind: str  # one of CELL_KINDS
    id: str  # grade id of code/demo/answer cells, problem name of solution/check, "" for markdown
    source: str  # markdown text or python code; "" for solution and check cells
    points: int | None = None  # answer cells only


# ---------------------------------------------------------------------------- parsing


def parse_cells(text: str) -> list[CellSpec]:
    """The cells of a notebook.md text; ValueError with the line number on a malformed one."""
    blocks: list[tuple[int, str, list[str]]] = []  # (marker line number, marker body, content)
    for number, line in enumerate(text.splitlines(), start=1):
        marker = _MARKER.match(line.strip())
        if marker:
            blocks.append((number, marker.group(1).strip(), []))
        elif blocks:
            blocks[-1][2].append(line)
        elif line.strip():
            raise ValueError(f"line {number}: text before the first cell marker")
    cells = [_parse_block(number, body, content) for number, body, content in blocks]
    _check_unique_ids(cells, [number for number, _, _ in blocks])
    return cells


def _parse_block(number: int, body: str, content: list[str]) -> CellSpec:
    match = _MARKER_BODY.match(body)
    if not match or match.group("kind") not in CELL_KINDS:
        raise ValueError(f"line {number}: unknown cell marker <!-- {body} -->")
    kind, cell_id, points = match.group("kind"), match.group("id") or "", match.group("points")
    if (kind == "markdown") != (cell_id == ""):
        expected = "no id" if kind == "markdown" else "an id, e.g. <!-- " + kind + ": NAME -->"
        raise ValueError(f"line {number}: a {kind} marker takes {expected}")
    if (kind == "answer") != (points is not None):
        where = "answer markers need" if kind == "answer" else f"a {kind} marker takes no"
        raise ValueError(f"line {number}: {where} points=N")
    if kind in ("solution", "check") and cell_id not in PROBLEM_POINTS:
        raise ValueError(f"line {number}: {cell_id!r} is not a contract problem "
                         f"({', '.join(PROBLEM_POINTS)})")
    text = "\n".join(content).strip("\n")
    if kind in ("solution", "check"):
        if text.strip():
            raise ValueError(f"line {number}: a {kind} marker takes no content (it is generated)")
        text = ""
    elif kind in ("code", "demo"):
        text = _python_block(number, content)
    elif not text.strip():
        raise ValueError(f"line {number}: empty {kind} cell")
    return CellSpec(kind, cell_id, text, None if points is None else int(points))


def _python_block(number: int, content: list[str]) -> str:
    """The code of the one ```python fence that must make up a code/demo cell."""
    lines = list(content)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    fences = [line for line in lines if line.strip().startswith(_FENCE)]
    if (len(fences) != 2 or lines[0].strip() != _FENCE_OPEN or lines[-1].strip() != _FENCE):
        raise ValueError(f"line {number}: a code cell needs exactly one ```python fenced block "
                         "and nothing else")
    code = "\n".join(lines[1:-1]).strip("\n")
    if not code.strip():
        raise ValueError(f"line {number}: empty ```python block")
    return code


def _check_unique_ids(cells: list[CellSpec], numbers: list[int]) -> None:
    """nbgrader needs every grade_id once (check cells get "check_" + the problem name)."""
    seen: dict[str, int] = {}
    for cell, number in zip(cells, numbers):
        if not cell.id:
            continue
        grade_id = _grade_id(cell)
        if grade_id in seen:
            raise ValueError(f"line {number}: duplicate cell id {grade_id!r} "
                             f"(first used at line {seen[grade_id]})")
        seen[grade_id] = number


def _grade_id(cell: CellSpec) -> str:
    return "check_" + cell.id if cell.kind == "check" else cell.id


# ---------------------------------------------------------------------------- sources


def solution_source(name: str, solutions: Path = SOLUTIONS_PY) -> str:
    """The reference def/class `name`, each body wrapped in BEGIN/END SOLUTION lines."""
    text = solutions.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    nodes = [node for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name]
    if len(nodes) != 1:
        raise ValueError(f"{solutions}: no top-level def or class named {name!r}")
    node = nodes[0]
    if isinstance(node, ast.FunctionDef):
        out = _function_with_region(lines, node)
    else:
        out = _class_with_regions(lines, node)
    return "\n".join(out)


def _start(node: ast.FunctionDef | ast.ClassDef) -> int:
    """0-based first line of a definition, decorators included."""
    return min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1


def _header_end(lines: list[str], node: ast.FunctionDef | ast.ClassDef) -> int:
    """0-based index one past the header (decorators, signature, docstring)."""
    body = node.body
    if _is_docstring(body[0]):
        return body[0].end_lineno
    # No docstring: the header ends on the line of the colon that closes the signature.
    segment = "\n".join(lines[node.lineno - 1:body[0].lineno])
    depth = 0
    for token in tokenize.generate_tokens(io.StringIO(segment).readline):
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        elif token.type == tokenize.OP and token.string == ":" and depth == 0:
            if node.lineno - 1 + token.start[0] >= body[0].lineno:
                break
            return node.lineno - 1 + token.start[0]
    raise ValueError(f"line {node.lineno}: the body of {node.name} must start on its own line")


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _is_super_init(statement: ast.stmt) -> bool:
    return ast.dump(statement) == ast.dump(ast.parse("super().__init__()").body[0])


def _function_with_region(lines: list[str], node: ast.FunctionDef) -> list[str]:
    """Header as is, then the body between BEGIN/END SOLUTION at the body's indentation."""
    statements = [s for s in node.body if not _is_docstring(s)]
    kept_end = _header_end(lines, node)
    if node.name == "__init__" and statements and _is_super_init(statements[0]):
        kept_end = statements[0].end_lineno  # the stub must still build an nn.Module
        statements = statements[1:]
    head = lines[_start(node):kept_end]
    if not statements:
        return head
    body = lines[kept_end:node.end_lineno]
    indent = " " * statements[0].col_offset
    return head + [indent + BEGIN_SOLUTION] + body + [indent + END_SOLUTION]


def _class_with_regions(lines: list[str], node: ast.ClassDef) -> list[str]:
    """Class line and docstring as is; every method with its body as a solution region."""
    position = _header_end(lines, node)
    out = lines[_start(node):position]
    for statement in node.body:
        if _is_docstring(statement):
            continue
        start = _start(statement) if isinstance(statement, ast.FunctionDef) else statement.lineno - 1
        out += lines[position:start]  # blank lines and comments between members
        if isinstance(statement, ast.FunctionDef):
            out += _function_with_region(lines, statement)
        else:
            out += lines[start:statement.end_lineno]
        position = statement.end_lineno
    return out


def visible_check_source(name: str) -> str:
    """What the release's check cell of problem `name` holds: the public vae_checks call."""
    return f"{problem(name).check_function}({name})"


def points_table() -> str:
    """The problems and their points as a markdown table: two problems to a row, in contract
    order down the first pair of columns, then the second."""
    rows = (len(CONTRACT) + 1) // 2
    columns = [CONTRACT[:rows], CONTRACT[rows:]]
    lines = ["| problem | points | problem | points |", "|---|---|---|---|"]
    for index in range(rows):
        entries = [column[index] if index < len(column) else None for column in columns]
        cells = [text for entry in entries for text in ((f"`{entry.name}`", str(entry.points)) if entry else ("", ""))]
        lines.append("|" + "|".join(f" {text} " if text else " " for text in cells) + "|")
    return "\n".join(lines)


def _placeholders() -> dict[str, str]:
    return {
        "{check_functions}": ", ".join(entry.check_function for entry in CONTRACT),
        "{points_table}": points_table(),
        "{total_points}": str(TOTAL_POINTS),
    }


def _filled(source: str) -> str:
    for placeholder, text in _placeholders().items():
        source = source.replace(placeholder, text)
    return source


def check_source(name: str) -> str:
    """The check cell of problem `name`: the visible check, then a hidden note (removed from
    the release by nbgrader's generate_assignment, leaving `visible_check_source(name)`).

    Under `nbgrader autograde` this cell does not run in the student's kernel: the course's
    SandboxedAutograde sets its outputs from the standalone grader (autograder/nbgrader_autograde.py).
    """
    return "\n".join([
        visible_check_source(name),
        BEGIN_HIDDEN_TESTS,
        "# nbgrader autograde: scored by the sandboxed grader, not run (autograder/nbgrader_autograde.py)",
        END_HIDDEN_TESTS,
    ])


def without_hidden_tests(nb: NotebookNode) -> NotebookNode:
    """A copy of `nb` with every hidden-test region removed (what nbgrader releases)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if BEGIN_HIDDEN_TESTS in cell.source:
            kept, hidden = [], False
            for line in cell.source.split("\n"):
                if BEGIN_HIDDEN_TESTS in line:
                    hidden = True
                elif END_HIDDEN_TESTS in line:
                    hidden = False
                elif not hidden:
                    kept.append(line)
            cell.source = "\n".join(kept)
    return nb


# ---------------------------------------------------------------------------- notebook


def _nbgrader(grade_id: str, *, grade: bool, solution: bool, locked: bool,
              points: int | None = None) -> dict:
    meta = {"grade": grade, "solution": solution, "locked": locked, "task": False,
            "grade_id": grade_id, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _cell(spec: CellSpec) -> NotebookNode:
    if spec.kind == "markdown":
        return nbformat.v4.new_markdown_cell(_filled(spec.source))
    if spec.kind == "code":
        return nbformat.v4.new_code_cell(
            _filled(spec.source), metadata=_nbgrader(spec.id, grade=False, solution=False, locked=True))
    if spec.kind == "demo":
        metadata = _nbgrader(spec.id, grade=False, solution=False, locked=True)
        metadata[SKIP_MARK] = {"skip_when_grading": True}
        return nbformat.v4.new_code_cell(_filled(spec.source), metadata=metadata)
    if spec.kind == "solution":
        return nbformat.v4.new_code_cell(
            solution_source(spec.id),
            metadata=_nbgrader(spec.id, grade=False, solution=True, locked=False))
    if spec.kind == "check":
        return nbformat.v4.new_code_cell(
            check_source(spec.id),
            metadata=_nbgrader(_grade_id(spec), grade=True, solution=False, locked=True,
                               points=PROBLEM_POINTS[spec.id]))
    if spec.kind == "answer":
        return nbformat.v4.new_markdown_cell(
            spec.source, metadata=_nbgrader(spec.id, grade=True, solution=True, locked=False,
                                            points=spec.points))
    raise ValueError(f"unknown cell kind {spec.kind!r}")


def _check_problems(cells: list[CellSpec]) -> None:
    """Every contract problem needs exactly one solution cell and one check cell, in contract
    order (the notebook numbers its problems in that order, and so does every output)."""
    for kind in ("solution", "check"):
        names = [cell.id for cell in cells if cell.kind == kind]
        missing = [name for name in PROBLEMS if name not in names]
        if missing:
            raise ValueError(f"notebook.md has no {kind} cell for {', '.join(missing)}")
        if names != list(PROBLEMS):
            raise ValueError(f"notebook.md's {kind} cells come in the order {', '.join(names)}; they must "
                             f"follow the contract's (assignment/contract.py): {', '.join(PROBLEMS)}")


def build_notebook(text: str | None = None) -> NotebookNode:
    """The nbgrader source notebook (reference solutions inside) of notebook.md's text."""
    specs = parse_cells(NOTEBOOK_MD.read_text() if text is None else text)
    _check_problems(specs)
    cells = [_cell(spec) for spec in specs]
    for index, (spec, cell) in enumerate(zip(specs, cells)):
        cell.id = f"{spec.kind}-{spec.id}" if spec.id else f"{spec.kind}-{index}"  # reproducible
    nb = nbformat.v4.new_notebook(
        cells=cells,
        metadata={"kernelspec": dict(_KERNELSPEC), "language_info": {"name": "python"}},
    )
    nbformat.validate(nb)
    return nb


def grading_code_cells(nb: NotebookNode) -> list[tuple[str, str]]:
    """(label, source) of the code cells a submission runs when graded, in notebook order.

    Every code cell except demo cells (marked skip_when_grading) and nbgrader test cells
    (grade true, solution false: the grader has its own tests). The label is the cell's
    grade_id, or "cell N" (N counted from 1 over all cells) for a cell without one.
    """
    selected = []
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        if cell.metadata.get(SKIP_MARK, {}).get("skip_when_grading", False):
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade", False) and not meta.get("solution", False):
            continue
        selected.append((meta.get("grade_id") or f"cell {number}", cell.source))
    return selected
