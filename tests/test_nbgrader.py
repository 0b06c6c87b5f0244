"""nbgrader end to end: `nbgrader autograde` gives the per-problem scores of `vae-assignment grade`.

A course directory from `build_release` gets four student notebooks in `submitted/`: the
reference, the stubs, a catalogued mistake that also edits a locked test cell, and a
correct variant written with torch.distributions. The real `nbgrader
autograde` runs them (the check cells' hidden part scores each problem with the standalone
grader, see autograder/nbgrader_cell.py) while the standalone grader grades the same
notebooks in this process; then `nbgrader generate_feedback` and `nbgrader export`.
"""
from __future__ import annotations

import csv
import html
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from assignment.notebook import (
    ASSIGNMENT, BEGIN_SOLUTION, END_SOLUTION, SOURCE_NOTEBOOK_NAME, build_notebook,
)
from assignment.release import COURSE_ID, build_release
from autograder import mistakes, nbgrader_cell
from autograder.collect import Submission
from autograder.contract import PROBLEM_POINTS, TOTAL_POINTS
from autograder.grading import grade
from tests.catalogue import ALL

pytestmark = pytest.mark.slow

VARIANTS = {variant.name: variant for variant in ALL}
MISTAKES = ("kl_missing_half",)  # partial credit: 1 of gaussian_kl's 20 points
CORRECT = "correct_torch_distributions"
TAMPERED = "kl_missing_half"  # also replaces its locked check cell by one that passes
TAMPERED_CELL = "check_gaussian_kl"
ANSWER = "The closed form has no sampling noise, so the estimate and its gradients vary less."
STUDENTS = ("reference", "stubs", *MISTAKES, CORRECT)
NBGRADER_TIMEOUT_S = 900


def meta(cell: NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def cell_by_id(nb: NotebookNode, grade_id: str) -> NotebookNode:
    (cell,) = [c for c in nb.cells if meta(c).get("grade_id") == grade_id]
    return cell


def without_solution_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n")
                     if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))


def student_notebooks(release_nb: NotebookNode) -> dict[str, NotebookNode]:
    """What each student hands in: the release notebook with their solution cells filled in."""
    source_nb = build_notebook()
    reference = nbformat.from_dict(release_nb)
    for name in PROBLEM_POINTS:
        cell_by_id(reference, name).source = without_solution_markers(cell_by_id(source_nb, name).source)
    for cell in reference.cells:  # the written questions, answered
        if cell.cell_type == "markdown" and meta(cell).get("grade") and meta(cell).get("solution"):
            cell.source = ANSWER
    notebooks = {"reference": reference, "stubs": nbformat.from_dict(release_nb)}
    for name in (*MISTAKES, CORRECT):
        nb = nbformat.from_dict(reference)
        for problem, source in VARIANTS[name].replaces.items():
            cell_by_id(nb, problem).source = source.rstrip("\n")
        notebooks[name] = nb
    # Edits a locked test cell so that it would pass: nbgrader must restore the original.
    cell_by_id(notebooks[TAMPERED], TAMPERED_CELL).source = "pass  # nothing to check here"
    return notebooks


def nbgrader(course: Path, *args: str) -> subprocess.Popen:
    """`python -m nbgrader ARGS` in the course directory, as an instructor runs it."""
    bin_dir = str(Path(sys.executable).parent)  # nbgrader's gradebook calls `alembic` on PATH
    env = dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, what: str) -> str:
    log, _ = process.communicate(timeout=NBGRADER_TIMEOUT_S)
    assert process.returncode == 0, f"nbgrader {what} failed (exit {process.returncode}):\n{log[-4000:]}"
    return log


@dataclass
class Run:
    course: Path
    submitted: dict[str, NotebookNode]
    nbgrader_scores: dict[str, dict[str, float]]  # student -> problem -> score in the gradebook
    answers: dict[str, list[tuple[float | None, bool]]]  # student -> (score, needs manual grade)
    standalone: dict[str, dict]  # student -> the standalone grader's record
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    seconds = {}
    started = time.perf_counter()
    out = tmp_path_factory.mktemp("nbgrader")
    release = build_release(out)
    course = out / "course"
    seconds["release"] = time.perf_counter() - started
    notebooks = student_notebooks(nbformat.read(release / SOURCE_NOTEBOOK_NAME, as_version=4))
    paths = {}
    for student, nb in notebooks.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        paths[student] = folder / SOURCE_NOTEBOOK_NAME
        nbformat.write(nb, paths[student])

    started = time.perf_counter()
    # nbgrader autograde grades one notebook after another: two processes share the students
    # (and the gradebook), and the standalone grader runs meanwhile, in this process.
    halves = (STUDENTS[:2], STUDENTS[2:])
    autogrades = [nbgrader(course, "autograde", ASSIGNMENT, "--force",
                           f"--CourseDirectory.student_id_exclude={','.join(other)}")
                  for other in reversed(halves)]
    standalone = {student: grade(Submission(student, path)) for student, path in paths.items()}
    seconds["standalone (while autograde runs)"] = time.perf_counter() - started
    for autograde in autogrades:
        finish(autograde, "autograde")
    seconds["autograde + standalone"] = time.perf_counter() - started

    started = time.perf_counter()
    finish(nbgrader(course, "generate_feedback", ASSIGNMENT, "--force"), "generate_feedback")
    finish(nbgrader(course, "export", "--to", "grades.csv"), "export")
    seconds["generate_feedback + export"] = time.perf_counter() - started

    from nbgrader.api import Gradebook

    scores, answers = {}, {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        answer_ids = [c.name for c in gradebook.find_notebook(ASSIGNMENT, ASSIGNMENT).grade_cells
                      if c.cell_type == "markdown"]
        for student in STUDENTS:
            def find(cell_id: str):
                return gradebook.find_grade(cell_id, ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {p: find("check_" + p).score for p in PROBLEM_POINTS}
            answers[student] = [(find(a).score, find(a).needs_manual_grade) for a in answer_ids]
    print("\n" + "\n".join(f"{what}: {s:.1f} s" for what, s in seconds.items()))
    return Run(course, notebooks, scores, answers, standalone, seconds)


def test_autograde_gives_the_standalone_scores_per_problem(run):
    rows = []
    for student in STUDENTS:
        record = run.standalone[student]
        assert record["error"] is None, (student, record["error"])
        expected = {p: float(record["problems"][p]["score"]) for p in PROBLEM_POINTS}
        rows.append(f"{student:28s} " + " ".join(
            f"{run.nbgrader_scores[student][p]:g}/{expected[p]:g}" for p in PROBLEM_POINTS))
        assert run.nbgrader_scores[student] == pytest.approx(expected), student
    print("\nnbgrader/standalone per problem (" + ", ".join(PROBLEM_POINTS) + ")\n" + "\n".join(rows))
    # The submissions span the range: full marks, nothing, and partial credit read by nbgrader.
    assert sum(run.nbgrader_scores["reference"].values()) == TOTAL_POINTS
    assert sum(run.nbgrader_scores[CORRECT].values()) == TOTAL_POINTS
    assert sum(run.nbgrader_scores["stubs"].values()) == 0
    for name in MISTAKES:
        problem = VARIANTS[name].problem
        assert run.nbgrader_scores[name][problem] < PROBLEM_POINTS[problem], name
    assert any(0 < run.nbgrader_scores[name][VARIANTS[name].problem] for name in MISTAKES)


def autograded(run: Run, student: str) -> NotebookNode:
    path = run.course / "autograded" / student / ASSIGNMENT / SOURCE_NOTEBOOK_NAME
    return nbformat.read(path, as_version=4)


def test_check_cells_neither_fail_nor_write_to_stderr(run):
    """What would make nbgrader give 0 regardless of the returned score."""
    for student in STUDENTS:
        for problem in PROBLEM_POINTS:
            outputs = cell_by_id(autograded(run, student), "check_" + problem).outputs
            bad = [o for o in outputs if o.output_type == "error"
                   or (o.output_type == "stream" and o.name == "stderr")]
            assert not bad, (student, problem, bad)
            assert [o.output_type for o in outputs].count("execute_result") == 1, (student, problem)


def test_an_edited_locked_test_cell_is_restored(run):
    submitted = cell_by_id(run.submitted[TAMPERED], TAMPERED_CELL).source
    graded = cell_by_id(autograded(run, TAMPERED), TAMPERED_CELL).source
    original = cell_by_id(build_notebook(), TAMPERED_CELL).source
    assert submitted.startswith("pass") and graded == original
    problem = VARIANTS[TAMPERED].problem
    assert run.nbgrader_scores[TAMPERED][problem] < PROBLEM_POINTS[problem]


def test_written_questions_wait_for_manual_grading(run):
    assert len(run.answers["reference"]) == 3
    assert all(needs for _, needs in run.answers["reference"])  # answered: graded by hand
    assert all(score == 0 and not needs for score, needs in run.answers["stubs"])  # left blank


def test_feedback_shows_what_was_checked_and_the_likely_mistake_not_the_hidden_tests(run):
    path = run.course / "feedback" / "kl_missing_half" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    text = html.unescape(path.read_text())
    hint = next(m.hint for m in mistakes.MISTAKES if m.code == "kl_missing_half")
    assert "Checked:" in text and "Likely mistake: " + hint in text
    for hidden in ("BEGIN HIDDEN TESTS", "problem_score", "autograder.nbgrader_cell", "nonfatal"):
        assert hidden not in text


def test_export_csv_has_the_autograded_totals(run):
    with (run.course / "grades.csv").open() as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    for student in STUDENTS:
        total = sum(run.standalone[student]["problems"][p]["score"] for p in PROBLEM_POINTS)
        assert float(rows[student]["raw_score"]) == pytest.approx(total), student


# ---------------------------------------------------------------------------- the cell's helpers


def test_problem_score_needs_the_notebook_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="no notebook"):
        nbgrader_cell.problem_score("elbo")


def test_a_failed_grader_is_a_short_assertion_and_nothing_on_stderr(tmp_path, monkeypatch, capfd):
    notebook = tmp_path / "vae.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)

    def failing(command, **kwargs):
        assert kwargs["capture_output"] and kwargs["env"]["OMP_NUM_THREADS"] == "1"
        return subprocess.CompletedProcess(command, 1, "", "vae-assignment grade failed: boom\n")

    monkeypatch.setattr(nbgrader_cell.subprocess, "run", failing)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match=r"^the grader failed \(exit 1\): .*boom$"):
        nbgrader_cell.problem_score("elbo")
    assert capfd.readouterr().err == ""


def test_a_failing_visible_check_prints_instead_of_raising(capfd):
    def check(fn):
        warnings.warn("noisy")
        sys.stderr.write("to stderr\n")
        raise AssertionError("elbo: wrong value\nLikely mistake: the sign")

    assert nbgrader_cell.nonfatal(check)(None) is None
    out, err = capfd.readouterr()
    assert "Visible check failed:\nelbo: wrong value" in out and "to stderr" in out and err == ""
