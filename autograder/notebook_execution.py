"""Running a notebook headless in this Python's kernel: the solution notebook for `demo` and the
tests. Not for student notebooks under grading: those run sandboxed (untrusted/notebook_runner.py)."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from assignment.notebook import SOURCE_NOTEBOOK_NAME, build_notebook, without_hidden_tests
from assignment.release import public_files, replace_path
from autograder.untrusted.notebook_runner import INLINE_BACKEND, this_python_kernel_manager_class


class NotebookExecutionError(Exception):
    """A cell failed; the message names the cell, `traceback` holds the kernel's traceback."""

    def __init__(self, message: str, traceback: str = ""):
        super().__init__(message)
        self.traceback = traceback


def execute_notebook(path: Path, cwd: Path, timeout: int = 600, *,
                     allow_errors: bool = False) -> NotebookNode:
    """Run every cell of the notebook at `path` in a fresh kernel started in `cwd`.

    `timeout` is per cell, in seconds. With `allow_errors`, a cell that raises keeps its error
    as an output and the next cells still run (as Jupyter's Run All would not). The kernel runs
    this Python and sees only `cwd` (not the project: PYTHONPATH is dropped). Plots use Jupyter's inline backend, which draws with
    Agg (no display needed), stores each figure as a PNG output and closes it after its cell;
    plain `MPLBACKEND=Agg` would drop every figure. Raises NotebookExecutionError naming the
    first cell that failed or timed out.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    current = {"index": -1}

    def on_cell_start(cell: NotebookNode, cell_index: int) -> None:
        current["index"] = cell_index

    client = NotebookClient(nb, kernel_manager_class=this_python_kernel_manager_class(),
                            timeout=timeout, on_cell_start=on_cell_start, allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd)}})
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["MPLBACKEND"] = INLINE_BACKEND
    try:
        client.execute(env=env, cwd=str(cwd))
    except (CellExecutionError, CellTimeoutError) as error:
        label = _cell_label(nb, current["index"])
        detail = str(error).strip()
        if isinstance(error, CellExecutionError):
            summary = f"{error.ename}: {error.evalue}"
        else:
            summary = f"timed out after {timeout} s"
        raise NotebookExecutionError(f"{path.name}: cell {label} failed: {summary}",
                                     detail) from None
    return nb


def _cell_label(nb: NotebookNode, index: int) -> str:
    """The cell's grade_id, or its number counted from 1."""
    if not 0 <= index < len(nb.cells):
        return "?"
    return nb.cells[index].metadata.get("nbgrader", {}).get("grade_id") or str(index + 1)


def execute_source_notebook(work_dir: Path, timeout: int = 600) -> NotebookNode:
    """Write the source notebook (reference solutions in, hidden tests out) beside the public
    files, run it."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    for path in public_files():
        replace_path(path, work_dir / path.name)
    notebook_path = work_dir / SOURCE_NOTEBOOK_NAME
    # Without the hidden tests: they grade the notebook with the whole grader (for nbgrader).
    nbformat.write(without_hidden_tests(build_notebook()), notebook_path)
    return execute_notebook(notebook_path, work_dir, timeout=timeout)
