"""The catalogue's submissions as students hand them in: the release notebook with its solution
cells filled in and its written questions answered, unexecuted (for the benchmark's class and
the similarity tests)."""
from __future__ import annotations

import nbformat
from nbformat import NotebookNode

from assignment.contract import PROBLEM_POINTS
from assignment.notebook import BEGIN_SOLUTION, END_SOLUTION, build_notebook

ANSWER = "The closed form has no sampling noise, so the estimate and its gradients vary less."


def meta(cell: NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def cell_by_id(nb: NotebookNode, grade_id: str) -> NotebookNode:
    """The one cell of `nb` with this nbgrader grade_id."""
    (cell,) = [c for c in nb.cells if meta(c).get("grade_id") == grade_id]
    return cell


def without_solution_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n")
                     if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))


def reference_notebook(release_nb: NotebookNode) -> NotebookNode:
    """The release notebook as a student who wrote the reference hands it in."""
    source_nb = build_notebook()
    reference = nbformat.from_dict(release_nb)
    for name in PROBLEM_POINTS:
        cell_by_id(reference, name).source = without_solution_markers(cell_by_id(source_nb, name).source)
    for cell in reference.cells:  # the written questions, answered
        if cell.cell_type == "markdown" and meta(cell).get("grade") and meta(cell).get("solution"):
            cell.source = ANSWER
    return reference
