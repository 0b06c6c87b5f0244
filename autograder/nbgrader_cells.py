"""Two of nbgrader's cell preprocessors, corrected for a course whose check cells hold hidden tests.

The course's `nbgrader_config.py` (assignment/release.py) names them in place of nbgrader's own:

- `OverwriteEditedCells` replaces `OverwriteCells` in `Autograde.sanitize_preprocessors`. nbgrader
  stores a locked cell in the gradebook, with its checksum, BEFORE `ClearHiddenTests` empties its
  hidden tests, and releases it after (jupyter/nbgrader#1961). So every untouched check cell that
  has hidden tests differs from the gradebook's, and nbgrader logs "Attribute 'checksum' for cell
  ... has changed!" for each one of every student: the warning that should flag a student who
  edited a locked cell flags everyone. Here a cell that is exactly what the release handed out
  gets the gradebook's version back silently (as nbgrader does, warning aside); any other change
  is warned about, naming the student and the cell, and the cell is restored as before. A check
  cell put back (`OverwriteCells.add_missing_cells`) gets a cell id made from its grade id, not
  a random one from nbformat, so that sanitizing a submission twice gives the same notebook.
- `ClearHiddenTestsInTestCells` replaces `ClearHiddenTests` in `GenerateFeedback.preprocessors`.
  nbgrader's removes hidden-test regions from EVERY cell and fails on a marker it cannot pair,
  so a student who writes `BEGIN HIDDEN TESTS` in an answer makes `generate_feedback` fail for
  them. Hidden tests only ever live in the instructor's test cells (graded, not a solution, and
  restored from the gradebook by autograde): only those are cleared; a student's text is shown
  as they wrote it.

Light on purpose (nbgrader only): `generate_feedback` imports this module.
"""
from __future__ import annotations

import re

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, NbGraderPreprocessor, OverwriteCells
from traitlets import List


class OverwriteEditedCells(OverwriteCells):
    """nbgrader's OverwriteCells that warns only about cells the student changed (see above)."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        self.student = resources["nbgrader"].get("student", "?")
        self.released_by = (ClearHiddenTests(config=self.config), ClearMarkScheme(config=self.config))
        nb, resources = super().preprocess(nb, resources)
        name_restored_cells(nb)
        return nb, resources

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        cell_index: int) -> tuple[NotebookNode, ResourcesDict]:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None:
            try:
                source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except MissingEntry:
                source_cell = None  # nbgrader's own method says so
            if source_cell is not None and source_cell.locked and cell.source == self.as_released(source_cell):
                cell.source = source_cell.source  # untouched: the gradebook's version, hidden tests included
        return super().preprocess_cell(cell, resources, cell_index)

    def as_released(self, source_cell) -> str | None:
        """The cell's source as `nbgrader generate_assignment` released it: hidden tests and mark
        scheme cleared, with this course's delimiters (None if the stored source is malformed)."""
        released = NotebookNode(cell_type=source_cell.cell_type, metadata={}, source=source_cell.source)
        clear_tests, clear_scheme = self.released_by
        try:
            clear_tests._remove_hidden_test_region(released)
            clear_scheme._remove_mark_scheme_region(released)
        except RuntimeError:
            return None
        return released.source

    def report_change(self, name: str, attr: str, old: object, new: object) -> None:
        self.log.warning("%s changed the locked cell %s (its %s should be %s, got %s): graded with the "
                         "instructor's version", self.student, name, attr, old, new)


def name_restored_cells(nb: NotebookNode) -> None:
    """Give the cells `add_missing_cells` put back an id made from their grade id. nbgrader adds
    them without one, so nbformat invents a random one when the notebook is written (and warns,
    MissingIDFieldWarning): the same submission would differ from one sanitizing to the next."""
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):  # cell ids came with nbformat 4.5
        return
    taken = {cell.get("id") for cell in nb.cells}
    for cell in nb.cells:
        if "id" not in cell:
            grade_id = re.sub(r"[^A-Za-z0-9_-]", "-", cell.metadata.get("nbgrader", {}).get("grade_id", "cell"))
            ident = base = f"restored-{grade_id}"[:56]
            number = 1
            while ident in taken:
                number += 1
                ident = f"{base}-{number}"
            cell["id"] = ident
            taken.add(ident)


class ClearHiddenTestsInTestCells(ClearHiddenTests):
    """nbgrader's ClearHiddenTests applied to the instructor's test cells only (see above)."""

    # HTMLExporter configures every preprocessor's display_data_priority; nbgrader's preprocessors
    # declare it unconfigurable, so traitlets logs "Config option ... not recognized" in feedback.
    display_data_priority = List(NbGraderPreprocessor.class_traits()["display_data_priority"].default()).tag(
        config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        cell_index: int) -> tuple[NotebookNode, ResourcesDict]:
        if utils.is_grade(cell) and not utils.is_solution(cell):
            return super().preprocess_cell(cell, resources, cell_index)
        return cell, resources

