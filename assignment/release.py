"""`vae-assignment release`: the student release, built with nbgrader, and a zip of it.

Steps, in order:
1. an nbgrader course directory in a temporary folder: nbgrader_config.py, the source
   notebook (reference solutions inside, from notebook.py) and the public files;
2. `nbgrader generate_assignment` (run in its own process with this Python, so the user's
   own nbgrader or a stale in-process state never takes part);
3. a last check that no solution or hidden-test marker survived;
4. OUT/vae/ (the release plus requirements.txt), OUT/vae.zip, and OUT/course/ (kept for
   `nbgrader autograde`: it has source/ and the gradebook).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from assignment.notebook import (
    ASSIGNMENT, ROOT, SOURCE_NOTEBOOK_NAME, build_notebook,
)

COURSE_ID = "vae-course"
PUBLIC_DIR = ROOT / "assignment" / "public"
# Project-only files in public/ that must not ship (public/ is also a Python package here).
_NOT_SHIPPED = {"__pycache__", "__init__.py", ".ipynb_checkpoints"}
FORBIDDEN_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
REQUIREMENTS = "\n".join([
    "# Python 3.10 or newer (the stubs use `Tensor | float` annotations)",
    "torch>=2.0",
    "numpy>=1.24",
    "matplotlib>=3.7",
    "jupyter>=1.0",
]) + "\n"
NBGRADER_CONFIG = "\n".join([
    "c = get_config()  # noqa: F821 (nbgrader defines get_config)",
    f'c.CourseDirectory.course_id = "{COURSE_ID}"',
    "# Every log line with its time.",
    'c.Application.log_format = "%(color)s[%(name)s %(asctime)s | %(levelname)s]%(end_color)s %(message)s"',
    'c.Application.log_datefmt = "%H:%M:%S"',
    "# autograde: the graded cells get the sandboxed grader's scores, not the kernel's, graded ahead on",
    "# a process pool (autograder/nbgrader_autograde.py, docs/nbgrader.md). nbgrader's defaults with",
    "# Execute replaced; by name, so that other commands do not import torch.",
    "c.Autograde.autograde_preprocessors = [",
    '    "autograder.nbgrader_autograde.SandboxedAutograde",',
    '    "nbgrader.preprocessors.IgnorePattern",',
    '    "nbconvert.preprocessors.ClearMetadataPreprocessor",',
    '    "nbgrader.preprocessors.LimitOutput",',
    '    "nbgrader.preprocessors.SaveAutoGrades",',
    '    "nbgrader.preprocessors.AssignLatePenalties",',
    '    "nbgrader.preprocessors.CheckCellMetadata",',
    "]",
    "# Grading processes (and sandboxed notebook runs at a time); a rerun reuses the results kept in",
    "# results_db (a killed run resumes). ahead = False grades one notebook at a time, as nbgrader does.",
    "c.SandboxedAutograde.jobs = 2",
    "c.SandboxedAutograde.ahead = True",
    'c.SandboxedAutograde.results_db = "autograde_results.sqlite"',
    "# True: also run each notebook's own cells in the sandbox, so that the feedback shows the",
    "# demonstrations' outputs (about 11 s of CPU per notebook, 2-3 times the grading).",
    "c.SandboxedAutograde.execute_notebook = False",
    "# True: refuse to grade where bubblewrap cannot run (as `vae-assignment grade --require-sandbox`).",
    "c.SandboxedAutograde.require_sandbox = False",
    "# Seconds per cell of the student's notebook (the training demos take 3 s to 30 s).",
    "c.SandboxedAutograde.cell_timeout = 300",
    "# nbgrader's sanitize step, warning only about locked cells a student really changed (nbgrader",
    "# #1961); a check cell the student deleted comes back, so that it gets the grader's score too.",
    "c.Autograde.sanitize_preprocessors = [",
    '    "nbgrader.preprocessors.ClearOutput",',
    '    "nbgrader.preprocessors.DeduplicateIds",',
    '    "nbgrader.preprocessors.OverwriteKernelspec",',
    '    "autograder.nbgrader_cells.OverwriteEditedCells",',
    '    "nbgrader.preprocessors.CheckCellMetadata",',
    "]",
    "c.OverwriteCells.add_missing_cells = True",
    "# Feedback shows every cell as autograded, hidden tests included (nbgrader #1363): drop them, from",
    "# the instructor's test cells only (a student's text may say BEGIN HIDDEN TESTS).",
    "c.GenerateFeedback.preprocessors = [",
    '    "nbgrader.preprocessors.GetGrades",',
    '    "autograder.nbgrader_cells.ClearHiddenTestsInTestCells",',
    '    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",',
    "]",
    "# Feedback and the formgrader's notebook view show what students wrote and printed: no active",
    "# markup reaches the instructor's browser (autograder/nbgrader_html.py).",
    "c.HTMLExporter.sanitize_html = True",
    'c.HTMLExporter.filters = {"markdown2html": "autograder.nbgrader_html.safe_markdown2html"}',
    'c.HTMLExporter.preprocessors = ["autograder.nbgrader_html.SafeNotebook"]',
    "# nbgrader export --to grades.csv: nbgrader's columns, spreadsheet-safe (autograder/nbgrader_export.py).",
    'c.ExportApp.plugin_class = "autograder.nbgrader_export.SpreadsheetSafeCsvExport"',
    "# The gradebook without SQLAlchemy 2's warning per new submission (autograder/nbgrader_gradebook.py).",
    "from autograder.nbgrader_gradebook import add_submissions_without_autoflush  # noqa: E402",
    "add_submissions_without_autoflush()",
]) + "\n"
LOG_TAIL_LINES = 40
# Folders nbgrader creates once grading has started in a course directory.
_GRADING_FOLDERS = ("submitted", "autograded", "feedback")


class ReleaseError(Exception):
    """A short message saying what went wrong; `log` holds the full detail (nbgrader's log)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


def public_files(public_dir: Path = PUBLIC_DIR) -> list[Path]:
    """The files shipped beside the notebook (vae_course.py, vae_checks.py, data, ...)."""
    return sorted(path for path in public_dir.iterdir()
                  if path.name not in _NOT_SHIPPED and not path.name.endswith(".pyc"))


def write_course(course: Path, notebook: NotebookNode) -> None:
    """An nbgrader course directory with the source notebook and the public files."""
    source = course / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    nbformat.write(notebook, source / SOURCE_NOTEBOOK_NAME)
    for path in public_files():
        if path.is_dir():
            shutil.copytree(path, source / path.name, ignore=shutil.ignore_patterns(*_NOT_SHIPPED))
        else:
            shutil.copy2(path, source / path.name)


def generate_assignment(course: Path) -> Path:
    """Run `nbgrader generate_assignment` in `course`; the released assignment folder."""
    command = [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force",
               f"--CourseDirectory.root={course}"]
    # nbgrader's gradebook runs the `alembic` command: it must be this environment's, which
    # is not on PATH when this Python is called by its path without activating the venv.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, PYTHONWARNINGS="ignore")
    done = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True)
    log = (done.stdout + done.stderr).strip()
    released = course / "release" / ASSIGNMENT
    if done.returncode != 0:
        raise ReleaseError(f"nbgrader generate_assignment failed (exit {done.returncode})", log)
    if not (released / SOURCE_NOTEBOOK_NAME).is_file():
        raise ReleaseError(f"nbgrader generate_assignment wrote no {SOURCE_NOTEBOOK_NAME}", log)
    return released


def find_markers(folder: Path) -> list[str]:
    """'file: marker' for every solution/hidden-test marker left in the files of `folder`."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            found += [f"{path.relative_to(folder)}: {marker}"
                      for marker in FORBIDDEN_MARKERS if marker in text]
    return found


def zip_folder(folder: Path, archive: Path) -> None:
    """`archive` holding `folder` itself (so it unpacks to folder.name/), files sorted."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, Path(folder.name) / path.relative_to(folder))


def replace_path(source: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def build_release(out_dir: Path, text: str | None = None) -> Path:
    """Build OUT/vae/, OUT/vae.zip and OUT/course/ from notebook.md (or `text`); OUT/vae.

    Everything is built in a temporary folder first, so a failed build leaves `out_dir`
    as it was; a course directory in which grading has started is never replaced.
    """
    out_dir = Path(out_dir)
    graded = [name for name in _GRADING_FOLDERS if (out_dir / "course" / name).exists()]
    if graded:
        raise ReleaseError(f"{out_dir / 'course'} already holds {', '.join(graded)}/: "
                           "release into another folder (rebuilding would replace its gradebook)")
    notebook = build_notebook(text)
    with tempfile.TemporaryDirectory(prefix="vae-release-") as tmp:
        course = Path(tmp) / "course"
        write_course(course, notebook)
        released = generate_assignment(course)
        (released / "requirements.txt").write_text(REQUIREMENTS)
        leaks = find_markers(released)
        if leaks:
            raise ReleaseError("the release still holds solution or hidden-test markers",
                               "\n".join(leaks))
        archive = Path(tmp) / f"{ASSIGNMENT}.zip"
        zip_folder(released, archive)
        out_dir.mkdir(parents=True, exist_ok=True)
        replace_path(released, out_dir / ASSIGNMENT)
        replace_path(archive, out_dir / archive.name)
        replace_path(course, out_dir / "course")
    return out_dir / ASSIGNMENT


def main_release(out: Path) -> int:
    """The `vae-assignment release` command: 0 on success, 1 with a short error otherwise."""
    try:
        release = build_release(out)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        if error.log:
            tail = error.log.splitlines()[-LOG_TAIL_LINES:]
            print("\n".join("  " + line for line in tail), file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:  # a malformed notebook.md, an unwritable OUT
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"release: {release}")
    print(f"zip: {release.parent / (ASSIGNMENT + '.zip')}")
    print(f"nbgrader course directory (for autograde): {release.parent / 'course'}")
    return 0
