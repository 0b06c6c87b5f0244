"""`vae-assignment grade` end to end: scores, bad input, exit status, stable outputs."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from assignment.contract import PROBLEMS
from autograder.cli import main
from autograder.pipeline import EXIT_OK, EXIT_USAGE

REFERENCE = Path(__file__).resolve().parent.parent / "solutions" / "vae.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("class")
    shutil.copy(REFERENCE, folder / "ada.py")
    (folder / "empty.py").write_text("")
    (folder / "broken.ipynb").write_text('{"cells": [')
    (folder / "latin1.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    (folder / "syntax.py").write_text("def gaussian_kl(:\n")
    return folder


@pytest.fixture(scope="module")
def graded_twice(class_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    codes = []
    for run in (1, 2):
        codes.append(main(["grade", str(class_folder), "--json", str(out / f"run{run}.json"),
                           "--csv", str(out / f"run{run}.csv"), "--jobs", "2"]))
    return codes, out


def test_every_submission_is_graded_and_the_exit_status_says_so(graded_twice):
    codes, out = graded_twice
    assert codes == [EXIT_OK, EXIT_OK]
    records = {r["id"]: r for r in json.loads((out / "run1.json").read_text())["submissions"]}
    assert records["ada"]["score"] == 100 and records["ada"]["error"] is None
    assert records["ada"]["model"]["heldout_elbo"] > records["ada"]["model"]["reference_heldout_elbo"] - 2.5
    expected_errors = {"empty": "empty", "broken": "not valid JSON", "latin1": "not UTF-8", "syntax": "SyntaxError"}
    for student, words in expected_errors.items():
        record = records[student]
        assert words in record["error"] and record["score"] == 0
        assert set(record["problems"]) == set(PROBLEMS)
        assert all(t["status"] == "error" and words in t["message"] for p in record["problems"].values() for t in p["tests"])


def test_two_runs_give_identical_json(graded_twice):
    _, out = graded_twice
    assert (out / "run1.json").read_text() == (out / "run2.json").read_text()


def test_csv_has_a_row_per_student_and_a_column_per_problem(graded_twice):
    _, out = graded_twice
    rows = list(csv.DictReader((out / "run1.csv").open()))
    assert [row["id"] for row in rows] == ["ada", "broken", "empty", "latin1", "syntax"]
    assert list(rows[0]) == ["id", *PROBLEMS, "total", "max_score", "error"]
    assert rows[0]["total"] == "100" and rows[0]["VAE"] == "30"


def test_gradescope_results_json(class_folder, tmp_path):
    results = tmp_path / "results.json"
    assert main(["grade", str(class_folder / "syntax.py"), "--gradescope", str(results)]) == EXIT_OK
    document = json.loads(results.read_text())
    assert document["score"] == 0 and "SyntaxError" in document["output"]
    assert {"name", "number", "score", "max_score", "status", "output", "visibility"} <= set(document["tests"][0])
    assert sum(t["max_score"] for t in document["tests"]) == 100


def test_an_output_flag_does_not_change_what_is_graded(class_folder, tmp_path):
    def grade(name: str, *flags: str) -> tuple[str, dict]:
        grades, results = tmp_path / f"{name}.json", tmp_path / f"{name}.results.json"
        assert main(["grade", str(class_folder / "ada.py"), "--json", str(grades), "--gradescope", str(results),
                     "--db", str(tmp_path / f"{name}.sqlite"), "--jobs", "1", *flags]) == EXIT_OK
        return grades.read_text(), json.loads(results.read_text())

    plain = tmp_path / "plain.json"
    assert main(["grade", str(class_folder / "ada.py"), "--json", str(plain), "--db", str(tmp_path / "plain.sqlite"),
                 "--jobs", "1"]) == EXIT_OK
    with_gradescope, results = grade("gradescope")
    assert with_gradescope == plain.read_text()  # --gradescope only writes
    assert not any(t["name"].startswith("Visible check") for t in results["tests"])
    with_checks, results = grade("checks", "--visible-checks")
    assert "visible_checks" in json.loads(with_checks)["submissions"][0]
    assert sum(t["name"].startswith("Visible check") for t in results["tests"]) == 7
    assert results["score"] == 100


def test_usage_errors(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "missing")]) == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    assert main(["grade", str(tmp_path)]) == EXIT_USAGE
    assert "no submissions" in capsys.readouterr().err
