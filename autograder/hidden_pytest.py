"""Run the hidden tests under pytest with a plugin: the one way grading (scoring.py), listing
them and recording the reference's examples (replay.py) call pytest."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

HIDDEN_TESTS = Path(__file__).resolve().parent / "hidden_tests"
# Plugins a grading run does not need; unraisableexception alone costs 0.4 s per run (gc.collect).
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:warnings", "-p", "no:randomly",
               "-p", "no:unraisableexception", "-p", "no:threadexception", "-p", "no:logging",
               "-p", "no:faulthandler", "-o", "python_files=test_*.py", "-o", "addopts="]


class NativeTracebacks:
    """Python's own traceback in pytest's failure reports, which nothing reads (a record's
    message comes from the exception): pytest's own parses the test's source, about 0.3 s of
    grader CPU per submission that fails tests. (`--tb` belongs to the terminal plugin, which is off.)"""

    def pytest_configure(self, config: pytest.Config) -> None:
        config.option.tbstyle = "native"


def run_pytest(extra: list[str], plugin: object) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = pytest.main([str(HIDDEN_TESTS), *PYTEST_ARGS, *extra], plugins=[plugin, NativeTracebacks()])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise RuntimeError(f"the hidden tests could not run (pytest exit code {int(code)})")
