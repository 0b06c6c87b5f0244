"""Run the hidden tests against one submission and turn pytest's outcomes into scores.

Each hidden test lives in `hidden_tests/test_<problem>.py` and carries `@pytest.mark.points(n)`;
its first docstring line is its description. A test scores all of its points or none. What a
test measures beyond its outcome (the model's held-out ELBO) it reports with pytest's
`record_property`; those measurements come back beside the results.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest

from autograder.hidden_pytest import run_pytest
from autograder.hidden_tests.support import problem_of_test_file
from autograder.replay import Example, recorded_examples, replay, test_key
from autograder.worker_client import Student, StudentError, WorkerFailure

MESSAGE_CHARS = 3000


def problem_of(item: pytest.Item) -> str:
    return problem_of_test_file(str(item.fspath))


def describe(item: pytest.Item) -> str:
    doc = (getattr(item, "function", None).__doc__ or item.name).strip()
    return doc.splitlines()[0]


def message_of(error: BaseException) -> tuple[str, str, str | None]:
    """(status, message, recognised mistake code) for an exception raised by a test."""
    if isinstance(error, WorkerFailure):
        return "error", str(error), None
    if isinstance(error, StudentError):
        return "failed", f"Your code raised {error}", None
    if isinstance(error, AssertionError):
        notes = [n for n in getattr(error, "__notes__", []) if n.startswith("Falsifying")]
        text = "\n".join([str(error), *notes])
        return "failed", text, getattr(error, "mistake", None)
    if isinstance(error, BaseExceptionGroup):
        return message_of(error.exceptions[0])
    return "failed", f"{type(error).__name__}: {error}", None


class GradingPlugin:
    """Gives the hidden tests their `student` and records one result per test. Hypothesis
    tests first run on the examples recorded from the reference (see replay.py)."""

    def __init__(self, student: Student, examples: dict[str, list[Example]]):
        self.submission = student
        self.examples = examples
        self.results: list[dict] = []
        self.measurements: dict[str, object] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function):
        examples = self.examples.get(test_key(pyfuncitem))
        if examples is None:
            return None
        failure = replay(pyfuncitem, examples)
        if failure is None:
            return True  # passed on every example hypothesis would have generated
        if isinstance(failure, WorkerFailure):
            # Hypothesis would end the same way: a worker failure sticks for the rest of the
            # test (worker_client.Student), so it fails every example it shrinks to.
            raise failure
        self.submission.begin_test()
        return None  # a wrong answer: hypothesis runs the test from the start and shrinks

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call":
            self.measurements.update(report.user_properties)
        if report.when == "call" or (report.when == "setup" and report.failed):
            points = item.get_closest_marker("points").args[0]
            if report.passed:
                status, message, mistake = "passed", "", None
            else:
                status, message, mistake = message_of(call.excinfo.value)
            printed = self.submission.take_output()
            if printed.strip() and not report.passed:
                message += f"\n\nYour code printed:\n{printed}"
            self.results.append({
                "problem": problem_of(item), "name": item.name, "description": describe(item),
                "score": points if report.passed else 0, "max_score": points,
                "status": status, "message": message[:MESSAGE_CHARS], "mistake": mistake,
                "seconds": round(report.duration, 3),
            })

    @pytest.fixture
    def student(self) -> Student:
        if self.submission.start_failure is not None:
            raise self.submission.start_failure  # fails the test at setup: no examples to generate
        self.submission.begin_test()
        return self.submission


class CollectingPlugin:
    """Lists the hidden tests without running them."""

    def __init__(self):
        self.tests: list[dict] = []

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.tests.append({"problem": problem_of(item), "name": item.name, "description": describe(item),
                               "max_score": item.get_closest_marker("points").args[0]})


@dataclass(frozen=True)
class HiddenTestRun:
    results: list[dict]  # every test's record, in file and definition order
    measurements: dict[str, object]  # what the tests recorded with record_property, e.g. heldout_elbo


def run_hidden_tests(student: Student, select: str | None = None, use_replay: bool = True) -> HiddenTestRun:
    """Run the hidden tests against `student`. Hypothesis tests replay the reference's examples
    (replay.py) when `use_replay`, else run under hypothesis alone."""
    plugin = GradingPlugin(student, recorded_examples() if use_replay else {})
    run_pytest(["-k", select] if select else [], plugin)
    return HiddenTestRun(plugin.results, plugin.measurements)


@functools.lru_cache(maxsize=1)
def hidden_tests() -> tuple[dict, ...]:
    plugin = CollectingPlugin()
    run_pytest(["--collect-only"], plugin)
    return tuple(plugin.tests)


def not_graded(reason: str) -> list[dict]:
    """Zero records for every hidden test of a submission that could not be read."""
    return [{**test, "score": 0, "status": "error", "message": f"Not graded: {reason}", "mistake": None}
            for test in hidden_tests()]
