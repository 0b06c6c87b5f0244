"""Grade one submission: read it, run the hidden tests against it in a worker, build its record.

The record is plain data (record.py): it is what a process pool or a cluster sends back,
and what every output (JSON, CSV, Gradescope) is written from.
"""
from __future__ import annotations

import time

import torch

from autograder import record, reference_cache
from autograder.collect import Submission, SubmissionError, cells_of
from autograder.isolation import sandbox
from autograder.scoring import not_graded, run_hidden_tests
from autograder.settings import Settings
from autograder.worker_client import Student


def prepare_process(settings: Settings) -> None:
    """Once per grading process: one torch thread (parallel workers slow each other 4x
    otherwise), and the settings' cache folder."""
    torch.set_num_threads(1)
    reference_cache.use_folder(settings.cache_folder)


def grade(submission: Submission, settings: Settings, timing: dict | None = None, *,
          visible_checks: bool = False, isolation: sandbox.Isolation | None = None) -> dict:
    """The submission's record: scores per problem and test, and an error when it was unreadable.
    `timing`, when given, receives the seconds spent starting workers and training the model.
    `visible_checks` adds the notebook's visible checks (for Gradescope), run after the hidden
    tests so that they cannot change a score. `isolation`: this process's, detected once
    (under `settings` when not given)."""
    started = time.monotonic()
    isolation = isolation or sandbox.detect(settings)
    limits = settings.limits
    if limits.require_sandbox:
        sandbox.require(isolation)
    try:
        cells = cells_of(submission)
    except SubmissionError as error:
        return unreadable(submission, str(error), isolation)
    notebook = submission.path.suffix == ".ipynb"
    student = Student(cells, limits, isolation, settings.worker_start, notebook=notebook, started=started)
    try:
        broken = None if notebook else student.compile_error()  # a module that does not compile: nothing runs
        if broken is not None:
            return unreadable(submission, broken, isolation)
        run = run_hidden_tests(student)
        problems = record.problems_from(run.results)
        checks = student.visible_checks() if visible_checks else None
    finally:
        student.close()
    if timing is not None:
        timing.update(student.timing)
    graded = _record(submission, problems, None, isolation, student.load_errors, run.measurements)
    return graded if checks is None else {**graded, "visible_checks": checks}


def unreadable(submission: Submission, reason: str, isolation: sandbox.Isolation) -> dict:
    """The record of a submission that could not be read: every test not graded, for `reason`."""
    return _record(submission, record.problems_from(not_graded(reason)), reason, isolation)


def _record(submission: Submission, problems: dict, error: str | None, isolation: sandbox.Isolation,
            cell_errors: list[tuple[str, str]] = (), model: dict | None = None) -> dict:
    return record.build(submission.id, submission.where, problems, error, isolation.level, cell_errors, model)
