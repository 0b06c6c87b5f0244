"""What the project's tests share: the isolation a grader would resolve here, waiting for a
condition, and the hidden tests' points marker (some tests import hidden-test modules, e.g. for
their visible-check cases)."""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from autograder.isolation import sandbox
from autograder.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the points a hidden test is worth (autograder/hidden_tests)")


@pytest.fixture(scope="session")
def isolation() -> sandbox.Isolation:
    """How workers are contained on this machine, resolved once from the environment (VAE_*
    variables included), as every grading entry point does before it builds a Student."""
    return sandbox.detect(Settings.from_environment())


def _wait_until(condition: Callable[[], object], seconds: float, step: float = 0.05) -> bool:
    """Poll `condition` until it holds or `seconds` have passed; whether it held. For a test that
    waits for processes to settle: it waits for what it checks, not for a fixed time."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@pytest.fixture(scope="session")
def wait_until() -> Callable[[Callable[[], object], float], bool]:
    return _wait_until
