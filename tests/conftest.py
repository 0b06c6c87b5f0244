"""What the project's tests share: the isolation a grader would resolve here, and the hidden
tests' points marker (some tests import hidden-test modules, e.g. for their visible-check cases)."""
from __future__ import annotations

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
