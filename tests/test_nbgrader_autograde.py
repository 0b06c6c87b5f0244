"""The pieces of SandboxedAutograde and the per-problem export, without running nbgrader
(tests/test_nbgrader.py runs the real `nbgrader autograde` end to end)."""
from __future__ import annotations

import csv

import nbformat
import pytest
from nbgrader.utils import determine_grade

from assignment.contract import PROBLEM_POINTS
from assignment.notebook import build_notebook
from autograder import nbgrader_autograde
from autograder.isolation import sandbox
from autograder.nbgrader_autograde import (
    SandboxedAutograde, copy_outputs, set_graded_outputs, without_graded_code,
)
from autograder.nbgrader_export import write_csv


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

