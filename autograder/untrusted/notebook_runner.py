"""Run a student's notebook in a kernel of this Python; runs inside the sandbox (untrusted side).

    python -I notebook_runner.py FOLDER CELL_TIMEOUT  < notebook.json  > executed.json

Copies FOLDER's plain files (not its notebooks) into the working folder, where the kernel
starts, executes every code cell with nbclient (a failing cell does not stop the others, as
under nbgrader's Execute) and writes the executed notebook as JSON to stdout. Both this client
and the kernel run in the sandbox (autograder/nbgrader_autograde.py starts it), so its output
is no more trusted than the student's code: the grader keeps only the cells' outputs.

Imports only the Jupyter libraries: the project is not mounted in the sandbox. The kernel
manager is also what `assignment/release.py` runs the source notebook with.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # headless, keeps the figures
TIMEOUT_MESSAGE = "CellTimeoutError: the cell ran past its time limit"


def this_python_kernel_manager_class() -> type:
    """A kernel manager whose kernel is this very Python, not a python3 spec found elsewhere."""
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonKernelManager(AsyncKernelManager):
        # IPC sockets: private to this machine, and no "running over TCP" warning (not on
        # Windows). Their path must be absolute: the kernel runs in another working directory.
        transport = "tcp" if os.name == "nt" else "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            if self.transport == "tcp":
                return "127.0.0.1"
            return os.path.join(tempfile.gettempdir(), f"kernel-{uuid.uuid4().hex[:12]}-ipc")

        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(resource_dir="", **get_kernel_dict())

    return ThisPythonKernelManager


def copy_folder(source: Path, target: Path) -> None:
    """The plain files of `source` (not notebooks, not links) into `target`, subfolders kept."""
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.suffix == ".ipynb":
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)


def main(argv: list[str]) -> int:
    import nbformat
    from nbclient import NotebookClient

    folder, cell_timeout = Path(argv[0]), int(argv[1])
    # The executed notebook goes to a copy of stdout; the kernel's own stdout and stderr
    # (inherited fds, not its cells' outputs) go to stderr, so they cannot mix into it.
    result = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    notebook = nbformat.reads(sys.stdin.read(), as_version=4)
    copy_folder(folder, Path.cwd())
    client = NotebookClient(
        notebook, kernel_manager_class=this_python_kernel_manager_class(), timeout=cell_timeout,
        allow_errors=True, interrupt_on_timeout=True, raise_on_iopub_timeout=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "", "traceback": [TIMEOUT_MESSAGE]},
        resources={"metadata": {"path": str(Path.cwd())}},
    )
    client.execute(cwd=str(Path.cwd()), env=dict(os.environ, MPLBACKEND=INLINE_BACKEND))
    result.write(nbformat.writes(notebook))
    result.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
