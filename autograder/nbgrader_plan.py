"""What one `nbgrader autograde` run will autograde, known before it gets there.

nbgrader autogrades one submission after another: for each `submitted/<student>/<assignment>`
folder in sorted order it decides whether to process it (`BaseConverter.init_destination`:
`--CourseDirectory.student_id_exclude`, an autograded copy that does not exist yet, `--force`,
a submission newer than its autograded copy), copies the folder, "sanitizes" each notebook
(outputs cleared, locked cells restored from the gradebook: `Autograde.sanitize_preprocessors`),
writes it to `autograded/` and reads it back for the autograde preprocessors. To grade ahead,
SandboxedAutograde needs, at nbgrader's first notebook, the same list and the notebooks exactly
as nbgrader will hand them over. This module computes both without side effects:

- `planned_notebooks`: the notebooks of this run from the current one on, by the same rules
  (`--student` and `--assignment` globs are in nbgrader's list of folders already);
- `Sanitizer`: nbgrader's sanitize step on a submitted notebook, with nbgrader's own configured
  preprocessors and silenced logs (nbgrader logs its warnings when it gets there itself), then
  the write and read back and nbformat's normalisation that nbgrader's exporter applies.
  SandboxedAutograde compares this text with the notebook it is handed and regrades on any
  difference, so a mismatch costs time, never a wrong grade;
- `links_in_submission`: symbolic links in a submission folder, which are refused (nbgrader copies them
  following the link, and reads a linked notebook: the source notebook, a classmate's).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import validator
from nbgrader.api import Gradebook, MissingEntry

_QUIET = logging.getLogger("vae-assignment.nbgrader-ahead")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_QUIET.setLevel(logging.CRITICAL + 1)


@dataclass(frozen=True)
class PlannedNotebook:
    student: str
    assignment: str
    notebook: str  # nbgrader's notebook id: the file name without .ipynb
    submitted: Path  # the submitted notebook

    @property
    def key(self) -> tuple[str, str, str]:
        return self.student, self.assignment, self.notebook


def _submitted_pattern(converter) -> re.Pattern:
    coursedir = converter.coursedir
    return re.compile(coursedir.format_path(coursedir.submitted_directory, "(?P<student_id>.*)",
                                            "(?P<assignment_id>.*)", escape=True))


def planned_notebooks(converter, student: str, assignment: str) -> list[PlannedNotebook]:
    """The notebooks `converter` (nbgrader's Autograde, at the notebook of `student` and
    `assignment`) autogrades from this one on, in its order."""
    pattern, coursedir = _submitted_pattern(converter), converter.coursedir
    known: dict[str, set[str]] = {}
    planned: list[PlannedNotebook] = []
    reached = False
    for folder in sorted(converter.assignments):
        match = pattern.match(folder)
        if match is None:
            continue
        this_student, this_assignment = match["student_id"], match["assignment_id"]
        reached = reached or (this_student, this_assignment) == (student, assignment)
        if not reached:
            continue
        if this_assignment not in known:
            known[this_assignment] = _gradebook_notebooks(coursedir, this_assignment)
        notebooks = sorted(path for path in converter.assignments[folder]
                           if Path(path).stem in known[this_assignment])
        current = (this_student, this_assignment) == (student, assignment)
        if current or _will_autograde(converter, this_assignment, this_student, notebooks):
            planned += [PlannedNotebook(this_student, this_assignment, Path(path).stem, Path(path))
                        for path in notebooks]
    return planned


def _gradebook_notebooks(coursedir, assignment: str) -> set[str]:
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        try:
            return {notebook.name for notebook in gradebook.find_assignment(assignment).notebooks}
        except MissingEntry:
            return set()


def _will_autograde(converter, assignment: str, student: str, notebooks: list[str]) -> bool:
    """`BaseConverter.init_destination`'s answer, without removing anything."""
    coursedir = converter.coursedir
    if coursedir.student_id_exclude and student in coursedir.student_id_exclude.split(","):
        return False
    destination = os.path.normpath(coursedir.format_path(coursedir.autograded_directory, student, assignment))
    if coursedir.notebook_id == "*":
        if not os.path.exists(destination):
            return True
    elif any(not os.path.exists(os.path.join(destination, Path(path).stem + ".ipynb")) for path in notebooks):
        return True
    if converter.force:
        return True
    new = coursedir.get_existing_timestamp(coursedir.format_path(coursedir.submitted_directory, student, assignment))
    old = coursedir.get_existing_timestamp(destination)
    return new is not None and old is not None and new > old


class Sanitizer:
    """nbgrader's sanitize step of `converter`'s run, on one submitted notebook at a time."""

    def __init__(self, converter):
        self.db_url = converter.coursedir.db_url
        self.exporter = converter.exporter_class(config=converter.config, log=_QUIET)
        for preprocessor in converter.sanitize_preprocessors:
            self.exporter.register_preprocessor(preprocessor)

    def __call__(self, planned: PlannedNotebook) -> str:
        """The notebook as nbgrader's autograde preprocessors will get it, as nbformat text."""
        resources = {"unique_key": planned.notebook, "output_files_dir": f"{planned.notebook}_files",
                     "nbgrader": {"student": planned.student, "assignment": planned.assignment,
                                  "notebook": planned.notebook, "db_url": self.db_url}}
        written, _ = self.exporter.from_filename(str(planned.submitted), resources=resources)
        return as_handed_over(written)


def as_handed_over(text: str) -> str:
    """A notebook written by nbgrader, as its next exporter hands it to a preprocessor (read back
    and normalised, nbconvert's Exporter._preprocess), in nbformat's text."""
    nb = nbformat.reads(text, as_version=4)
    if hasattr(validator, "normalize"):
        _, nb = validator.normalize(nb)
    return nbformat.writes(nb)


def links_in_submission(converter, student: str, assignment: str) -> list[Path]:
    """The symbolic links among `submitted/<student>/<assignment>`, the folders above it up to
    `submitted/`, and everything in it (links to folders are listed, not followed)."""
    coursedir = converter.coursedir
    root = Path(os.path.normpath(coursedir.format_path(coursedir.submitted_directory, ".", ".")))
    folder = Path(os.path.normpath(coursedir.format_path(coursedir.submitted_directory, student, assignment)))
    found = [above for above in [folder, *folder.parents] if root in above.parents and above.is_symlink()]
    if not found:
        for directory, subfolders, files in os.walk(folder):
            found += [Path(directory, name) for name in [*subfolders, *files] if Path(directory, name).is_symlink()]
    return sorted(found)
