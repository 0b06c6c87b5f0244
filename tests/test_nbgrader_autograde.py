"""The pieces of SandboxedAutograde and the per-problem export, without running nbgrader
(tests/test_nbgrader.py runs the real `nbgrader autograde` end to end)."""
from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import determine_grade

from assignment.contract import PROBLEM_POINTS
from assignment.notebook import ASSIGNMENT, build_notebook
from autograder import nbgrader_autograde
from autograder.isolation import sandbox
from autograder.nbgrader_autograde import (
    ClassRun, Graded, SandboxedAutograde, _RUNS, _summarise_unfinished, copy_outputs, set_graded_outputs,
    without_graded_code,
)
from autograder.nbgrader_export import write_csv
from autograder.nbgrader_plan import PlannedNotebook, planned_notebooks
from autograder.settings import Settings


def graded(nb, problem):
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "check_" + problem]
    return cell


def record(scores: dict[str, float]) -> dict:
    problems = {p: {"score": scores.get(p, 0.0), "max_score": points,
                    "tests": [{"name": "test_values", "status": "passed" if scores.get(p) == points else "failed",
                               "score": scores.get(p, 0.0), "max_score": points, "description": "values",
                               "message": "Expected: 1\nGot: 2"}]}
                for p, points in PROBLEM_POINTS.items()}
    return {"score": sum(scores.values()), "max_score": 100, "error": None, "problems": problems}


def test_nbgrader_reads_the_trusted_scores_from_the_graded_cells():
    nb = build_notebook()
    set_graded_outputs(nb, record({"gaussian_kl": 19.0, "VAE": 30.0}), "")
    assert determine_grade(graded(nb, "gaussian_kl"))[0] == 19.0
    assert determine_grade(graded(nb, "VAE"))[0] == 30.0
    assert determine_grade(graded(nb, "elbo"))[0] == 0.0
    assert "FAILED test_values (0 / 10): values\n  Expected: 1\n  Got: 2" in graded(nb, "elbo").outputs[0].text


def test_a_missing_trusted_score_is_an_explicit_zero_with_the_reason():
    nb = build_notebook()
    set_graded_outputs(nb, None, "the grader failed: boom")
    for problem in PROBLEM_POINTS:
        (output,) = graded(nb, problem).outputs
        assert output.output_type == "error" and output.evalue == "the grader failed: boom"
        assert determine_grade(graded(nb, problem))[0] == 0  # no output at all would be full credit
    nb = build_notebook()
    graded(nb, "elbo").metadata["nbgrader"]["grade_id"] = "check_softmax"
    set_graded_outputs(nb, record({}), "")
    (output,) = graded(nb, "softmax").outputs
    assert output.ename == "TrustedScoreMissing" and "'check_softmax' is not the graded cell" in output.evalue


def test_the_kernel_never_runs_a_graded_cell_and_only_its_outputs_of_the_others_are_kept():
    nb = build_notebook()
    sent = without_graded_code(nb)
    assert all(graded(sent, p).source == "" for p in PROBLEM_POINTS)
    assert graded(nb, "elbo").source != ""  # the original is untouched
    executed = nbformat.from_dict(sent)
    for cell in executed.cells:  # what a hostile kernel may send back
        cell.source = "forged"
        cell.metadata["nbgrader"] = {"grade": True, "points": 100}
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "100"})]
    original = nbformat.from_dict(nb)
    copy_outputs(executed, nb)
    for ours, before in zip(nb.cells, original.cells):
        assert ours.source == before.source and ours.metadata == before.metadata
        if ours.cell_type == "code" and not nbgrader_autograde.is_graded_code(ours):
            assert ours.outputs[0].data["text/plain"] == "100"
    assert all(graded(nb, p).outputs == [] for p in PROBLEM_POINTS)
    shorter = nbformat.from_dict(executed)
    shorter.cells.pop()
    fresh = build_notebook()
    copy_outputs(shorter, fresh)  # cells that do not line up: nothing is taken
    assert all(c.outputs == [] for c in fresh.cells if c.cell_type == "code")


def test_require_sandbox_refuses_to_grade_without_bubblewrap(monkeypatch):
    monkeypatch.setattr(sandbox, "detect", lambda settings: sandbox.Isolation("process", reason="bwrap is not installed"))
    resources = {"nbgrader": {"student": "alice"}, "metadata": {"path": "."}, "unique_key": "vae"}
    with pytest.raises(sandbox.SandboxUnavailable, match="require_sandbox is set and bubblewrap cannot run "
                                                         r"here \(bwrap is not installed\)"):
        SandboxedAutograde(require_sandbox=True).preprocess(build_notebook(), resources)


def test_the_per_problem_csv_makes_formulas_inert(tmp_path):
    path = tmp_path / "scores.csv"
    write_csv(path, [["student_id", "score"], ["=HYPERLINK(\"x\")", 1.5], ["-1+2", None], ["\tx", 0.0]])
    with path.open() as f:
        rows = list(csv.reader(f))
    assert rows == [["student_id", "score"], ["'=HYPERLINK(\"x\")", "1.5"], ["'-1+2", ""], ["'\tx", "0.0"]]



def _class_course(root: Path, students: list[str]) -> None:
    """A course directory with a gradebook that knows the assignment's notebook, and a
    submission per student."""
    root.mkdir(parents=True)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        gradebook.add_assignment(ASSIGNMENT)
        gradebook.add_notebook(ASSIGNMENT, ASSIGNMENT)
    for student in students:
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(build_notebook(), folder / f"{ASSIGNMENT}.ipynb")


def _autograde(root: Path, **options) -> Autograde:
    coursedir = CourseDirectory(root=str(root), assignment_id=ASSIGNMENT, **options.pop("coursedir", {}))
    converter = Autograde(coursedir=coursedir, **options)
    converter.exporter = converter.exporter_class(parent=converter, config=converter.config)
    converter.init_notebooks()
    return converter


@pytest.mark.parametrize("force", [False, True])
def test_the_plan_is_what_nbgrader_will_autograde(tmp_path, monkeypatch, force):
    """planned_notebooks against nbgrader's own decision (init_destination, run on a copy: it
    deletes what it will redo): not autograded yet, already autograded, handed in again since,
    excluded, older than its autograded copy; with and without --force."""
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    students = ["ann", "ben", "cat", "dan", "eve"]
    course = tmp_path / "course"
    _class_course(course, students)
    for student in ["ben", "cat", "eve"]:
        (course / "autograded" / student / ASSIGNMENT).mkdir(parents=True)
    for student, submitted, autograded in [("cat", "2026-01-02 10:00:00", "2026-01-01 10:00:00"),
                                           ("eve", "2026-01-01 10:00:00", "2026-01-02 10:00:00")]:
        (course / "submitted" / student / ASSIGNMENT / "timestamp.txt").write_text(submitted)
        (course / "autograded" / student / ASSIGNMENT / "timestamp.txt").write_text(autograded)
    options = {"force": force, "coursedir": {"student_id_exclude": "dan"}}
    planned = planned_notebooks(_autograde(course, **options), "ann", ASSIGNMENT)

    oracle = tmp_path / "oracle"
    shutil.copytree(course, oracle)
    nbgrader = _autograde(oracle, **options)
    expected = [s for s in students if nbgrader.init_destination(ASSIGNMENT, s)]
    assert [p.student for p in planned] == expected
    assert expected == (["ann", "ben", "cat", "eve"] if force else ["ann", "cat"])
    assert planned[0] == PlannedNotebook("ann", ASSIGNMENT, ASSIGNMENT,
                                         course / "submitted" / "ann" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    later = planned_notebooks(_autograde(course, **options), "cat", ASSIGNMENT)  # from the current one on
    assert [p.student for p in later] == expected[expected.index("cat"):]


def test_progress_lines_and_a_summary_even_when_nbgrader_stops_short(caplog):
    log = logging.getLogger("test-autograde-progress")
    run = ClassRun(log, Settings(), sandbox.Isolation("process", reason="no bwrap here"), converter=object(),
                   release=Path("release"), execute=False, cell_timeout=1, total=3)
    _RUNS[id(run.converter)] = run  # as ClassRun.of keeps it
    with caplog.at_level(logging.INFO, logger=log.name):
        run.done("ann", Graded(record({"gaussian_kl": 20.0}), "", how="graded ahead"))
        run.refused("ben", [Path("submitted/ben/vae/notes.txt")])
        _summarise_unfinished()  # at exit: nbgrader never reached the third notebook
        _summarise_unfinished()  # once only
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("[1/3] ann: 20 / 100 (gaussian_kl 20, reparameterize 0,")
    assert "graded ahead; " in lines[0] and "so far, about" in lines[0] and lines[0].endswith("left")
    assert lines[1].startswith("[2/3] ben: refused, the submission holds symbolic links: submitted/ben/vae/notes.txt")
    assert caplog.records[1].levelno == logging.ERROR
    assert len(lines) == 3 and lines[2].startswith("autograde finished: 2 of 3 notebook(s) in ")
    assert "1 graded, 1 refused (ben), 1 not reached" in lines[2] and "process (no OS sandbox: no bwrap here)" in lines[2]
