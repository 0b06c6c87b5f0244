"""Gradescope's results format: the results.json of one graded record (`grade --gradescope`).

Gradescope runs `run_autograder` for every submission, which must leave
`/autograder/results/results.json` (https://gradescope-autograders.readthedocs.io/en/latest/specs/);
the bundle that sets this up is gradescope_bundle.py.

What a student sees, and when:
- at once: the visible checks (the notebook's own `check_*` functions, run on their code in the
  sandboxed worker; no points), and why a submission could not be read, so it can be fixed;
- when the instructor publishes the grades (`after_published`): every hidden test with its
  points and feedback, and the total score.
The grader's printed output (the score table) is for instructors only.
"""
from __future__ import annotations

import json
from pathlib import Path

from assignment.contract import PROBLEMS
from autograder.files import write_atomically


def gradescope_results(record: dict, execution_time: float) -> dict:
    """Gradescope's results.json for one graded record (schema: tests/gradescope_results.schema.json).

    Hidden tests are `after_published`; the visible checks (when the record has them) and the
    reason a submission could not be read are `visible`, with no points."""
    tests = []
    if record["error"]:
        tests.append(_visible_entry("0", "Reading your submission", False,
                                    f"Your submission could not be graded: {record['error']}"))
    for number, check in enumerate(record.get("visible_checks", []), start=1):
        tests.append(_visible_entry(f"0.{number}", f"Visible check {check['name']} (no points)",
                                    check["passed"], check["output"] or "Passed."))
    for problem_number, problem in enumerate(PROBLEMS, start=1):
        for test_number, test in enumerate(record["problems"][problem]["tests"], start=1):
            tests.append({
                "name": f"{problem}: {test['description']}",
                "number": f"{problem_number}.{test_number}",
                "score": test["score"],
                "max_score": test["max_score"],
                "status": "passed" if test["status"] == "passed" else "failed",
                "output": test["message"] or "Passed.",
                "visibility": "after_published",
            })
    return {
        "score": record["score"],
        "execution_time": round(execution_time),
        "output": _summary(record),
        "visibility": "after_published",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def _visible_entry(number: str, name: str, passed: bool, output: str) -> dict:
    return {"name": name, "number": number, "score": 0, "max_score": 0,
            "status": "passed" if passed else "failed", "output": output, "visibility": "visible"}


def _summary(record: dict) -> str:
    """The top-level output, shown at once: so it tells nothing of the score."""
    if record["error"]:
        return f"Not graded: {record['error']}\nFix this and submit again."
    lines = ["Graded. The visible checks below are the notebook's own checks (no points); the hidden "
             "tests, their feedback and your score appear when the grades are published."]
    for error in record["cell_errors"][:5]:
        lines.append(f"A cell of your submission raised an error when it was run: {error['cell']}: "
                     f"{error['error'][:300]}")
    return "\n".join(lines)


def write_gradescope(path: Path, record: dict, execution_time: float) -> None:
    write_atomically(path, json.dumps(gradescope_results(record, execution_time), indent=2) + "\n")
