"""Gradebooks that are safe to open: no cell of a CSV runs as a spreadsheet formula, and the
plain-text score table keeps its columns apart."""
import csv
import inspect
import json
import re
from pathlib import Path

import pytest

from assignment.contract import PROBLEM_LABELS, PROBLEMS
from autograder import outputs
from autograder.cli import main
from autograder.pipeline import EXIT_OK

EVIL_ID = '=HYPERLINK("http:__evil.example","x")'  # a student names the file; the id is its stem


def test_a_formula_in_a_student_id_is_neutralised_in_the_csv_and_kept_in_the_json(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / f"{EVIL_ID}.py").write_text("def gaussian_kl(:\n")  # unreadable: graded without a worker
    (folder / "-1.py").write_text("")  # an id that is a plain number stays as it is
    (folder / "@ada.py").write_text("")
    out = tmp_path / "out"
    code = main(["grade", str(folder), "--csv", str(out / "grades.csv"), "--json", str(out / "grades.json"),
                 "--db", str(tmp_path / "grades.sqlite"), "--jobs", "1"])
    assert code == EXIT_OK
    rows = {row["id"]: row for row in csv.DictReader((out / "grades.csv").open(newline=""))}
    assert set(rows) == {"'" + EVIL_ID, "-1", "'@ada"}
    evil = rows["'" + EVIL_ID]
    assert evil["total"] == "0" and evil["max_score"] == "100" and evil["gaussian_kl"] == "0"
    assert evil["error"].startswith("SyntaxError")  # begins with a letter: as written
    ids = [r["id"] for r in json.loads((out / "grades.json").read_text())["submissions"]]
    assert sorted(ids) == sorted([EVIL_ID, "-1", "@ada"])


@pytest.mark.parametrize("cell, written", [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\r=1", "'\r=1"), ("ada", "ada"), ("a=b", "a=b"), ("", ""),
    (-3, -3), (-2.5, -2.5), (0, 0), ("-2.5", "-2.5"), ("+1e3", "+1e3"),
])
def test_spreadsheet_safe_quotes_formulas_and_leaves_numbers(cell, written):
    assert outputs.spreadsheet_safe(cell) == written


def test_negative_numbers_stay_numbers_in_the_csv_text():
    text = outputs.csv_text([["id", "score"], ["=cmd|' /C calc'!A0", -1.5]])
    assert list(csv.reader(text.splitlines())) == [["id", "score"], ["'=cmd|' /C calc'!A0", "-1.5"]]


def test_the_score_table_has_a_distinct_short_label_per_problem():
    assert set(PROBLEM_LABELS) == set(PROBLEMS)
    labels = list(PROBLEM_LABELS.values())
    assert len(set(labels)) == len(labels) and all(0 < len(label) <= 8 for label in labels)
    record = {"id": "ada", "score": 100, "max_score": 100, "error": None, "cell_errors": [],
              "problems": {p: {"score": 1} for p in PROBLEMS}}
    header = outputs.summary_table([record]).splitlines()[0]
    assert header.split()[1:1 + len(PROBLEMS)] == [PROBLEM_LABELS[p] for p in PROBLEMS]


def test_every_csv_the_package_writes_goes_through_csv_text():
    root = Path(__file__).resolve().parents[1]
    writers = [path.relative_to(root).as_posix() for folder in ("autograder", "assignment", "benchmarks", "solutions")
               for path in sorted((root / folder).rglob("*.py"))
               if re.search(r"csv\.(writer|DictWriter)\(", path.read_text(encoding="utf-8"))]
    assert writers == ["autograder/outputs.py"]
    assert "csv.writer(" in inspect.getsource(outputs.csv_text)
