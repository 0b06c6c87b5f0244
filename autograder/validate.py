"""`vae-assignment validate`: the grader must give the reference full marks, the release's
stubs 0, each catalogued mistake a loss in its own problem only (with its hint named, when it
has one), and each correct variant full marks; and check_values.json must be up to date."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from assignment.contract import PROBLEM_POINTS, PROBLEMS, TOTAL_POINTS
from assignment.notebook import SOURCE_NOTEBOOK_NAME, build_notebook
from assignment.release import build_release
from autograder import catalogue
from autograder.check_values import stale_reason
from autograder.batch import grade_all
from autograder.collect import find_submissions
from autograder.outputs import timing_summary
from autograder.settings import Settings


@dataclass(frozen=True)
class Expectation:
    kind: str  # "full", "zero" or "mistake"
    problem: str | None = None
    hint: str | None = None


def write_cases(folder: Path) -> dict[str, Expectation]:
    """Write every validation submission into `folder`; what each one must score."""
    shutil.copy(catalogue.REFERENCE_PATH, folder / "reference_module.py")
    nbformat.write(build_notebook(), folder / "reference_notebook.ipynb")
    release = build_release(folder.parent / "release")
    shutil.copy(release / SOURCE_NOTEBOOK_NAME, folder / "release_stubs.ipynb")
    expected = {"reference_module": Expectation("full"), "reference_notebook": Expectation("full"),
                "release_stubs": Expectation("zero")}
    catalogue.write_submissions(folder, catalogue.MISTAKES + catalogue.CORRECT)
    for variant in catalogue.MISTAKES:
        expected[variant.name] = Expectation("mistake", variant.problem, variant.hint and variant.hint.code)
    for variant in catalogue.CORRECT:
        expected[variant.name] = Expectation("full")
    return expected


def verdict(record: dict, expectation: Expectation) -> tuple[bool, str]:
    scores = {p: record["problems"][p]["score"] for p in PROBLEMS}
    if expectation.kind == "full":
        lost = [p for p in PROBLEMS if scores[p] < PROBLEM_POINTS[p]]
        return not lost, "full marks" if not lost else f"false fail in {', '.join(lost)}"
    if expectation.kind == "zero":
        return record["score"] == 0, f"score {record['score']:g} (must be 0)"
    own = expectation.problem
    elsewhere = [p for p in PROBLEMS if p != own and scores[p] < PROBLEM_POINTS[p]]
    caught = scores[own] < PROBLEM_POINTS[own]
    if not caught:
        return False, f"not caught: {own} kept all its points"
    if elsewhere:
        return False, f"also cost points in {', '.join(elsewhere)} (no error carried forward)"
    codes = {t["mistake"] for t in record["problems"][own]["tests"] if t["mistake"]}
    caught = f"caught in {own} ({scores[own]:g}/{PROBLEM_POINTS[own]})"
    if expectation.hint is None:
        return True, caught
    if expectation.hint not in codes:
        return False, f"{caught}; its hint {expectation.hint} NOT named in the feedback"
    return True, f"{caught}; named"


def run_validation(settings: Settings, jobs: int = 2) -> int:
    stale = stale_reason()
    with tempfile.TemporaryDirectory(prefix="vae-validate-") as tmp:
        cases = Path(tmp) / "cases"
        cases.mkdir()
        expected = write_cases(cases)
        submissions = find_submissions([cases])
        records, timings = grade_all(submissions, jobs=jobs, settings=settings)
    rows, failures = [], 0
    for record in records:
        ok, text = verdict(record, expected[record["id"]])
        failures += not ok
        rows.append(f"{'ok ' if ok else 'MISS'}  {record['id']:<36} {record['score']:>5g}/{TOTAL_POINTS}  {text}")
    mistakes = [e for e in expected.values() if e.kind == "mistake"]
    named = sum("; named" in r for r in rows)
    if stale:
        failures += 1
        rows.append(f"MISS  {stale}: run python -m autograder.check_values")
    print("\n".join(rows))
    print(f"\n{len(records)} submissions graded; per submission {timing_summary(timings)}; {len(mistakes)} catalogued mistakes, "
          f"{named} of {sum(e.hint is not None for e in mistakes)} with a hint named in feedback.")
    print("validate: all expectations met" if not failures else f"validate: {failures} expectation(s) missed")
    return 0 if not failures else 1
