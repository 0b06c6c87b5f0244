"""Grade one submission: read it, run the hidden tests against it in a worker, build its record.

The record is plain data (the JSON format in README.md): it is what a process pool or a
cluster sends back, and what every output (JSON, CSV, Gradescope) is written from.
"""
from __future__ import annotations

import torch

from autograder import sandbox
from autograder.collect import Submission, SubmissionError, read_cells
from autograder.contract import TOTAL_POINTS
from autograder.scoring import not_graded, problems_from, run_hidden_tests
from autograder.worker_client import Limits, Student


def prepare_process() -> None:
    """Once per grading process: one torch thread (parallel workers slow each other 4x otherwise)."""
    torch.set_num_threads(1)


def grade(submission: Submission, limits: Limits = Limits(), timing: dict | None = None) -> dict:
    """The submission's record: scores per problem and test, and an error when it was unreadable.
    `timing`, when given, receives the seconds spent starting workers and training the model."""
    if limits.require_sandbox and not sandbox.detect().sandboxed:
        raise sandbox.SandboxUnavailable(f"the sandbox is required but not usable: {sandbox.detect().reason}")
    try:
        cells = read_cells(submission.path)
    except SubmissionError as unreadable:
        return record(submission, problems_from(not_graded(str(unreadable))), str(unreadable))
    except OSError as unreadable:
        reason = f"the file cannot be read: {unreadable.strerror}"
        return record(submission, problems_from(not_graded(reason)), reason)
    student = Student(cells, limits)
    try:
        problems = problems_from(run_hidden_tests(student))
    finally:
        student.close()
    if timing is not None:
        timing.update(student.timing)
    return record(submission, problems, None, student.load_errors, student.facts)


def record(submission: Submission, problems: dict, error: str | None,
           cell_errors: list[tuple[str, str]] = (), model: dict | None = None) -> dict:
    return {
        "id": submission.id,
        "path": str(submission.path),
        "score": sum(p["score"] for p in problems.values()),
        "max_score": TOTAL_POINTS,
        "error": error,
        "cell_errors": [{"cell": label, "error": message} for label, message in cell_errors],
        "problems": problems,
        # The trained model's held-out ELBO and the reference's (nats per image), when trained.
        "model": {"heldout_elbo": None, "reference_heldout_elbo": None, **(model or {})},
        "isolation": sandbox.detect().level,  # how student code was contained: bubblewrap or process
    }
