"""`nbgrader export` of every graded cell's score: one row per submission, one column per problem.

    nbgrader export --exporter=autograder.nbgrader_export.ProblemScoresExporter --to scores.csv

nbgrader's own export writes totals only. Columns: assignment, student_id, then each graded
cell of the assignment by its grade id (`check_gaussian_kl`, ... for the 7 problems, the written
questions' ids; empty while a cell waits for grading by hand), then score, max_score and
needs_manual_grade. `--assignment` and `--student` select rows as for nbgrader's CSV export.
"""
from __future__ import annotations

from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.plugins import ExportPlugin

from autograder.files import write_atomically
from autograder.outputs import csv_text

DEFAULT_DESTINATION = "problem_scores.csv"


class ProblemScoresExporter(ExportPlugin):
    """Per-problem scores from the gradebook to a CSV file (`--to`, default problem_scores.csv)."""

    def export(self, gradebook: Gradebook) -> None:
        destination = Path(self.to or DEFAULT_DESTINATION)
        rows: list[list[object]] = []
        for assignment in gradebook.assignments:
            if self.assignment and assignment.name not in self.assignment:
                continue
            cells = [(notebook.name, cell.name) for notebook in assignment.notebooks
                     for cell in notebook.grade_cells]
            several = len(assignment.notebooks) > 1
            rows.append(["assignment", "student_id",
                         *(f"{nb}:{cell}" if several else cell for nb, cell in cells),
                         "score", "max_score", "needs_manual_grade"])
            for submission in sorted(assignment.submissions, key=lambda s: s.student.id):
                if self.student and submission.student.id not in self.student:
                    continue
                grades = {(nb.name, grade.name): None if grade.needs_manual_grade else grade.score
                          for nb in submission.notebooks for grade in nb.grades}
                rows.append([assignment.name, submission.student.id, *(grades.get(key) for key in cells),
                             submission.score, submission.max_score, submission.needs_manual_grade])
        write_csv(destination, rows)
        self.log.info("Per-problem scores of %d submissions written to %s",
                      sum(1 for row in rows if row[0] != "assignment"), destination)


def write_csv(path: Path, rows: list[list[object]]) -> None:
    """`rows` as CSV through the package's one CSV writer (formulas made inert); None as empty."""
    write_atomically(path, csv_text([["" if value is None else value for value in row] for row in rows]))
