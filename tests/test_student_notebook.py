"""The release's notebook as a student runs it, headless: typical mistakes, then code that
makes nan. What each check cell, the training cell and the summary (`check_all`) print."""
from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from assignment.notebook import BEGIN_SOLUTION, END_SOLUTION, SOURCE_NOTEBOOK_NAME, build_notebook
from assignment.release import build_release
from autograder.catalogue import MISTAKES as CATALOGUE, build_source
from autograder.mistakes import MISTAKES
from autograder.notebook_execution import execute_notebook

HINTS = {m.code: m.hint for m in MISTAKES}
TARGET = json.loads((Path(__file__).resolve().parents[1] / "assignment" / "public"
                     / "check_values.json").read_text())["model"]

# One typical mistake per problem from the catalogue; elbo stays right (on top of wrong parts).
TYPICAL = ("kl_missing_half", "reparam_std_is_exp_logvar", "bll_mean_not_sum", "gld_missing_constant",
           "iwae_missing_log_k", "vae_decoder_sigmoid")
VARIANTS = {variant.problem: variant for variant in CATALOGUE if variant.name in TYPICAL}


def definition(source: str, name: str) -> str:
    """The top-level def or class `name` of a module's source."""
    node = next(node for node in ast.parse(source).body
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name)
    return ast.get_source_segment(source, node)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return build_release(tmp_path_factory.mktemp("release"))


def grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def reference_sources() -> dict[str, str]:
    """The reference solution cells, markers removed: a student's finished work."""
    return {grade_id(cell): "\n".join(line for line in cell.source.splitlines()
                                      if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))
            for cell in build_notebook().cells
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")}


def run_as_student(release: Path, folder: Path, solutions: dict[str, str], *,
                   answers: dict[int, str] = {}, until: str | None = None) -> dict[str, dict]:
    """Fill the release's solution cells (and answers, by question number), save the notebook
    beside the public files, run it up to cell `until`; {grade_id: {"printed", "error"}}."""
    shutil.copytree(release, folder)
    path = folder / SOURCE_NOTEBOOK_NAME
    notebook = nbformat.read(path, as_version=4)
    questions = [cell for cell in notebook.cells
                 if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution")]
    for number, text in answers.items():
        questions[number - 1].source = text
    for cell in notebook.cells:
        if cell.cell_type == "code" and grade_id(cell) in solutions:
            cell.source = solutions[grade_id(cell)].strip()
    if until is not None:
        last = next(i for i, cell in enumerate(notebook.cells) if grade_id(cell) == until)
        notebook.cells = notebook.cells[:last + 1]
    nbformat.write(notebook, path)
    executed = execute_notebook(path, folder, timeout=300, allow_errors=True)
    results = {}
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        errors = [o for o in outputs if o.output_type == "error"]
        results[grade_id(cell)] = {
            "printed": "".join(o.get("text", "") for o in outputs if o.output_type == "stream"),
            "error": errors[0] if errors else None,
        }
    return results


def test_typical_mistakes_read_in_a_few_lines_and_the_summary_says_where_you_stand(release, tmp_path):
    solutions = {problem: definition(build_source(variant), problem) for problem, variant in VARIANTS.items()}
    assert len(solutions) == 6 and "elbo" not in solutions  # the release's elbo stub: filled below
    solutions["elbo"] = reference_sources()["elbo"]
    results = run_as_student(release, tmp_path / "student", solutions,
                             answers={2: "torch.normal's gradient is zero, so the encoder never learns."})
    for problem, variant in VARIANTS.items():
        error = results[f"check_{problem}"]["error"]
        assert error is not None, problem
        assert error.ename == "CheckFailed" and error.evalue.startswith(f"{problem}: ")
        assert f"Likely mistake: {variant.hint.text}" in error.evalue
        shown = "\n".join(error.traceback).splitlines()  # all Jupyter shows of the failure
        assert len(shown) <= 10, shown
        assert not any("vae_checks.py" in line or "Traceback" in line for line in shown)
    assert results["check_elbo"]["error"] is None
    assert results["check_elbo"]["printed"].startswith(
        "elbo: 12 checks passed, given your own gaussian_kl and bernoulli_log_likelihood, which fail their "
        "checks: fix Problem 1 (gaussian_kl) and Problem 3 (bernoulli_log_likelihood) first.")
    demos_and_code = {name: result for name, result in results.items() if not name.startswith("check_")}
    assert [name for name, result in demos_and_code.items() if result["error"]] == []

    training = results["train_model"]["printed"]
    reference = TARGET["reference_heldout_elbo"]
    assert f"target {reference - TARGET['full_margin']:.2f} for full points" in training
    assert "Verdict: no verdict: your training used code that fails its check" in training
    assert "  Problem 1 (gaussian_kl) fails its check: gaussian_kl: wrong value" in training
    assert "(should be 0, up to rounding" in results["linear_gaussian_demo"]["printed"]

    summary = results["check_all"]["printed"].splitlines()
    assert summary[0] == "Visible checks (a subset of the grader's tests):"
    assert summary[1].startswith("  [FAILED] Problem 1 (gaussian_kl), 20 points: gaussian_kl: wrong value")
    assert summary[2] == f"           Likely mistake: {HINTS['kl_missing_half']}"
    assert "  [passed] Problem 4 (elbo), 10 points: " + results["check_elbo"]["printed"].strip() in summary
    assert "  1 of 7 problems pass their visible checks." in summary
    assert any(line.startswith("  Verdict: no verdict") for line in summary)
    assert summary[-1] == "  unanswered: Question 1, Question 3."


def test_code_that_makes_nan_stops_training_at_once_and_names_the_check(release, tmp_path):
    solutions = reference_sources()
    solutions["bernoulli_log_likelihood"] = """
def bernoulli_log_likelihood(x, logits):
    return (x * torch.log(logits) + (1 - x) * torch.log(1 - logits)).sum(-1)
"""
    results = run_as_student(release, tmp_path / "student", solutions, until="train_model")
    assert "must be finite" in results["check_bernoulli_log_likelihood"]["error"].evalue
    error = results["train_model"]["error"]
    assert error.ename == "CheckFailed"
    lines = error.evalue.splitlines()
    assert lines[0] == "Stopped: the training loss at step 1 is nan, not a finite number."
    assert lines[1] == "It comes from code that fails its check:"
    assert lines[2].startswith("  Problem 3 (bernoulli_log_likelihood) fails its check: ")
    assert len(lines) == 3
    assert results["train_model"]["printed"] == ""  # no held-out ELBO of nan, no verdict
