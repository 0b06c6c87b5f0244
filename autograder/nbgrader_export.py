"""`nbgrader export` written through the package's one spreadsheet-safe CSV writer.

    nbgrader export --to grades.csv        # totals: nbgrader's columns (the course config's default)
    nbgrader export --exporter=autograder.nbgrader_export.ProblemScoresExporter --to scores.csv

`SpreadsheetSafeCsvExport` is nbgrader's own CSV export (`CsvExportPlugin`: the same columns,
rows and values) made safe: nbgrader writes each value raw, joined with commas, so a student id
such as `=HYPERLINK(...)` is run as a formula by a spreadsheet and a name with a comma shifts the
columns. The course's `nbgrader_config.py` makes it `ExportApp.plugin_class`.

`ProblemScoresExporter` writes every graded cell's score (nbgrader's export writes totals only).
Columns: assignment, student_id, then each graded cell of the assignment by its grade id
(`check_gaussian_kl`, ... for the 7 problems, the written questions' ids; empty while a cell
waits for grading by hand), then score, max_score and needs_manual_grade. `--assignment` and
`--student` select rows as for nbgrader's CSV export.
"""
from __future__ import annotations

from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import CsvExportPlugin, ExportPlugin

from autograder.files import write_atomically
from autograder.outputs import csv_text

DEFAULT_DESTINATION = "problem_scores.csv"
TOTALS_DESTINATION = "grades.csv"  # nbgrader's default
TOTALS_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score"]  # nbgrader's, in its order


class SpreadsheetSafeCsvExport(CsvExportPlugin):
    """nbgrader's CSV export of the totals, written through the package's CSV writer (see above)."""

    def export(self, gradebook: Gradebook) -> None:
        destination = Path(self.to or TOTALS_DESTINATION)
        students, assignments = [str(s) for s in self.student], [str(a) for a in self.assignment]
        rows: list[list[object]] = [TOTALS_COLUMNS]
        for assignment in gradebook.assignments:
            if assignments and assignment.name not in assignments:
                continue
            for student in gradebook.students:
                if students and student.id not in students:
                    continue
                row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
                       "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
                       "max_score": assignment.max_score}
                try:
                    submission = gradebook.find_submission(assignment.name, student.id)
                except MissingEntry:  # nothing handed in: 0, as nbgrader's export says
                    row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                else:
                    penalty = submission.late_submission_penalty
                    row.update(timestamp=submission.timestamp, raw_score=submission.score,
                               late_submission_penalty=penalty, score=max(0.0, submission.score - penalty))
                rows.append(["" if row[key] is None else str(row[key]) for key in TOTALS_COLUMNS])
        write_csv(destination, rows)
        self.log.info("Grades of %d submission(s) written to %s", len(rows) - 1, destination)


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
