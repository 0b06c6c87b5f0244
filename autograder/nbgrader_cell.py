"""What the hidden part of each check cell runs under `nbgrader autograde`.

Every check cell of the source notebook (see `assignment/notebook.py: check_source`) is

    ### BEGIN HIDDEN TESTS
    from autograder.nbgrader_cell import nonfatal, problem_score
    check_gaussian_kl = nonfatal(check_gaussian_kl)
    ### END HIDDEN TESTS
    check_gaussian_kl(gaussian_kl)                 # the visible check: all the release shows
    ### BEGIN HIDDEN TESTS
    problem_score("gaussian_kl")
    ### END HIDDEN TESTS

nbgrader scores a test cell 0 when it raises or writes anything to stderr, and otherwise
reads a numeric last expression as partial credit (capped at the cell's points). So:

- `nonfatal` keeps a failing visible check from ending the cell (it prints the failure to
  stdout): the score must come from the grader's tests, which give partial credit;
- `problem_score` grades the notebook being autograded with the standalone grader
  (`vae-assignment grade`, in a subprocess) and returns the problem's score, so nbgrader and
  the standalone grader agree by construction. It prints the failed tests' messages (what was
  checked, expected vs got, the likely mistake) to stdout, which nbgrader keeps in the cell
  output and thus in `generate_feedback`'s HTML. Nothing is written to stderr: the grader's
  output is captured and warnings are silenced.

The notebook graded is the one in the kernel's working directory: nbgrader autograde runs
the sanitized copy of a submission (locked cells restored from the gradebook) with the
kernel's cwd = `autograded/<student>/<assignment>/`. It is graded once per notebook run: the
first check cell runs the grader, later ones read its result, kept in this module (the kernel
keeps it between cells) under the hash of the notebook file. Nothing is cached on disk, so a
re-run of `nbgrader autograde --force` grades afresh (with the grader as it is then).

Trust model: under nbgrader this hidden code runs in the student's own kernel, after the
student's cells, as nbgrader's own tests do (nbgrader PR #1324 fixed one exploit of that
model). The score comes from the grader, which calls the student's functions only in its
sandboxed worker, never in this module; but a hostile notebook could tamper with the kernel
(replace this module, patch IPython) and so with the number nbgrader records. The
standalone `vae-assignment grade` is the secure path: use it, or compare with it, where
that matters.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_NAME = "vae.ipynb"  # preferred when the folder holds several notebooks
GRADE_TIMEOUT_S = 1800  # the grader's own limits end a submission well before this
MESSAGE_LINES = 25  # of each failed test's message in the printed summary

_results: dict[str, dict | str] = {}  # sha256 of the notebook file -> its record, or why none


class GradingFailed(AssertionError):
    """The grader could not grade the notebook: the cell fails and nbgrader gives it 0."""


def nonfatal(check: Callable) -> Callable:
    """`check`, except that a failure is printed (to stdout) instead of raised."""
    @functools.wraps(check)
    def run(*args: object, **kwargs: object) -> object:
        with _quiet():
            try:
                return check(*args, **kwargs)
            except (Exception, SystemExit) as failure:  # noqa: BLE001 - the student's code ran
                text = str(failure) or type(failure).__name__
                print(f"Visible check failed:\n{text}\n")
                return None
    return run


def problem_score(problem: str, notebook: str | Path | None = None) -> float:
    """The standalone grader's score of `problem` for the notebook being autograded.

    `notebook` defaults to the one notebook in the working directory. Prints a summary of
    the problem's failed tests to stdout; raises GradingFailed (an AssertionError) with the
    reason when the notebook could not be graded.
    """
    with _quiet():
        record = _record(Path(notebook) if notebook is not None else _find_notebook(Path.cwd()))
        problems = record.get("problems", {})
        if problem not in problems:
            raise GradingFailed(f"{problem!r} is not a graded problem ({', '.join(problems)})")
        result = problems[problem]
        print(summary(problem, result, record.get("error")))
        return float(result["score"])


def summary(problem: str, result: dict, error: str | None = None) -> str:
    """A short, readable account of one problem's tests: the score and every failure."""
    tests = result.get("tests", [])
    failed = [t for t in tests if t.get("status") != "passed"]
    lines = [f"{problem}: {_number(result['score'])} / {_number(result['max_score'])} points "
             f"from the grader's tests ({len(tests) - len(failed)} of {len(tests)} passed)"]
    if error:
        lines.append(f"The notebook could not be graded: {error}")
    for test in failed:
        lines.append("")
        lines.append(f"FAILED {test['name']} ({_number(test['score'])} / "
                     f"{_number(test['max_score'])}): {test.get('description', '')}".rstrip(": "))
        message = (test.get("message") or "").strip().splitlines()
        if len(message) > MESSAGE_LINES:
            message = message[:MESSAGE_LINES] + ["..."]
        lines += ["  " + line for line in message]
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


@contextlib.contextmanager
def _quiet():
    """No warning shown and nothing written to stderr (it goes to stdout instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stderr(sys.stdout):
            yield


def _find_notebook(folder: Path) -> Path:
    notebooks = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not notebooks:
        raise GradingFailed(f"no notebook (.ipynb) in {folder}: problem_score grades the notebook "
                            "that nbgrader autograde runs, in the kernel's working directory")
    if len(notebooks) > 1:
        preferred = [p for p in notebooks if p.name == NOTEBOOK_NAME]
        if not preferred:
            raise GradingFailed(f"several notebooks in {folder} and none is {NOTEBOOK_NAME}: "
                                f"{', '.join(p.name for p in notebooks)}")
        return preferred[0]
    return notebooks[0]


def _record(notebook: Path) -> dict:
    """The grader's record of `notebook`: from an earlier check cell of this kernel, or a run."""
    try:
        key = hashlib.sha256(notebook.read_bytes()).hexdigest()
    except OSError as error:
        raise GradingFailed(f"cannot read {notebook}: {error.strerror}") from None
    if key not in _results:
        try:
            _results[key] = _run_grader(notebook)
        except GradingFailed as failed:  # the later check cells fail at once, for the same reason
            _results[key] = str(failed)
        except KeyboardInterrupt:  # nbgrader's cell timeout (Execute.timeout) interrupts the kernel
            _results[key] = "the grading was interrupted (nbgrader's Execute.timeout?)"
            raise
    if isinstance(_results[key], str):
        raise GradingFailed(_results[key])
    return _results[key]


def _run_grader(notebook: Path) -> dict:
    """Run `vae-assignment grade NOTEBOOK --json` in a subprocess; its one record."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory(prefix="vae-nbgrader-") as tmp:
        out = Path(tmp) / "grades.json"
        command = [sys.executable, "-m", "autograder.cli", "grade", str(notebook.resolve()),
                   "--json", str(out), "--jobs", "1", "--db", str(Path(tmp) / "grades.sqlite")]
        try:
            # cwd: the project, so `autograder` is this package, not a file beside the notebook.
            done = subprocess.run(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=GRADE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise GradingFailed(f"the grader did not finish in {GRADE_TIMEOUT_S} s") from None
        except OSError as error:
            raise GradingFailed(f"the grader could not be started: {error}") from None
        if done.returncode != 0 or not out.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise GradingFailed(f"the grader failed (exit {done.returncode}): {lines[-1]}")
        try:
            return json.loads(out.read_text())["submissions"][0]
        except (OSError, ValueError, KeyError, IndexError) as error:
            raise GradingFailed(f"the grader's JSON is unreadable: {error}") from None
