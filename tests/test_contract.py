"""assignment/contract.py is the one registry of problems: each problem has its reference, its
hidden-test file (whose points add up to the problem's) and, for a FUNCTION problem, its
visible check's cases; nothing else lists the problems."""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from assignment.contract import CONTRACT, FUNCTION, PROBLEM_POINTS, PROBLEMS, problem
from autograder.check_values import visible_cases
from autograder.hidden_tests.support import problem_of_test_file
from autograder.scoring import hidden_tests
from solutions import vae as reference

HIDDEN_TESTS = Path(__file__).resolve().parents[1] / "autograder" / "hidden_tests"


def test_each_problem_has_its_reference_and_its_hidden_test_file():
    for name in PROBLEMS:
        assert callable(getattr(reference, name, None)), f"solutions/vae.py defines no {name}"
    files = {path.name for path in HIDDEN_TESTS.glob("test_*.py")}
    assert files == {f"test_{name}.py" for name in PROBLEMS}


def test_each_problems_hidden_test_points_add_up_to_its_contract_points():
    collected = Counter()
    for test in hidden_tests():
        collected[test["problem"]] += test["max_score"]
    assert dict(collected) == PROBLEM_POINTS


def test_each_function_problem_lists_the_cases_of_its_visible_check():
    for entry in CONTRACT:
        if entry.kind == FUNCTION:
            cases, parts = visible_cases(entry.name)
            assert cases, entry.name
            assert all(part in PROBLEMS for part, _ in parts)


def test_a_hidden_test_file_names_its_problem_by_its_name():
    assert problem_of_test_file("/any/where/test_elbo.py") == "elbo"
    with pytest.raises(ValueError, match="'softmax' is not a contract problem"):
        problem_of_test_file("test_softmax.py")
    with pytest.raises(ValueError, match="is not a contract problem"):
        problem("gaussian_kld")


def test_no_hidden_test_file_writes_its_problem_or_points_by_hand():
    for path in HIDDEN_TESTS.glob("test_*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PROBLEM" for t in node.targets):
                assert not isinstance(node.value, ast.Constant), f"{path.name}: PROBLEM comes from the file name"
        assert f"({PROBLEM_POINTS[path.stem.removeprefix('test_')]} points)" not in (ast.get_docstring(tree) or "")


READ_THEN_GRADE = """
import sys
from assignment.contract import PROBLEMS
from autograder.check_values import function_problems, visible_cases
from autograder.hidden_pytest import run_pytest
from autograder.scoring import CollectingPlugin
for problem in function_problems():
    visible_cases(problem)
assert not [m for m in sys.modules if m.startswith("autograder.hidden_tests.test_")], "imported for good"
run_pytest(["--collect-only"], CollectingPlugin())  # as a grading run imports them
given = sys.modules["autograder.hidden_tests.test_elbo"].test_values
assert given._hypothesis_internal_use_settings.derandomize, "not the grading profile"
print("ok")
"""


def test_reading_the_visible_cases_leaves_the_hidden_tests_to_their_grading_profile():
    """@given keeps the hypothesis settings of the moment it decorates: a process that reads the
    visible cases (validate does) and then grades must still run the grading profile."""
    done = subprocess.run([sys.executable, "-c", READ_THEN_GRADE], cwd=HIDDEN_TESTS.parents[1],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
