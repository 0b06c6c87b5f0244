"""Grade one submission: read it, run the hidden tests against it in a worker, build its record.

The record is plain data (the JSON format in README.md): it is what a process pool or a
cluster sends back, and what every output (JSON, CSV, Gradescope) is written from.
"""
from __future__ import annotations

import torch

from autograder.collect import Submission, SubmissionError, read_cells
from autograder.contract import TOTAL_POINTS
from autograder.scoring import problems_from, run_hidden_tests
from autograder.worker_client import Limits, Student, WorkerFailure


class UnreadableStudent(Student):
    """Stands in for a submission that could not be read: every request fails with the reason."""

    def __init__(self, reason: str):
        super().__init__([])
        self.reason = reason

    def request(self, op, timeout=None, rng_seed=None, **args):
        raise WorkerFailure(f"not graded: {self.reason}")


def prepare_process() -> None:
    """Once per grading process: one torch thread (parallel workers slow each other 4x otherwise)."""
    torch.set_num_threads(1)


def grade(submission: Submission, limits: Limits = Limits()) -> dict:
    """The submission's record: scores per problem and test, and an error when it was unreadable."""
    error = None
    try:
        student = Student(read_cells(submission.path), limits)
    except SubmissionError as unreadable:
        error = str(unreadable)
        student = UnreadableStudent(error)
    except OSError as unreadable:
        error = f"the file cannot be read: {unreadable.strerror}"
        student = UnreadableStudent(error)
    try:
        problems = problems_from(run_hidden_tests(student))
    finally:
        student.close()
    return {
        "id": submission.id,
        "path": str(submission.path),
        "score": sum(p["score"] for p in problems.values()),
        "max_score": TOTAL_POINTS,
        "error": error,
        "cell_errors": [{"cell": label, "error": message} for label, message in student.load_errors],
        "problems": problems,
    }
