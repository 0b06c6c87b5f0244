#!/usr/bin/env python3
"""Gradescope's `run_autograder` (copied into the bundle under that name by autograder/gradescope_bundle.py).

Grades the one submission in $AUTOGRADER_ROOT/submission (default /autograder) into
$AUTOGRADER_ROOT/results/results.json with `vae-assignment grade FILE --visible-checks --gradescope ...`, the
command setup.sh put on PATH. Whatever happens, a results.json is left: a submission without
exactly one notebook or .py file, one that holds a symbolic link (an unpacked archive keeps
them), or a grader that fails, gets a score of 0 and a failed entry that says why. Standard library only (any Python 3.8+), so it still reports when the grader's
own environment is broken; what it prints goes to Gradescope's stdout, shown to instructors only.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPECTED = "exactly one Jupyter notebook (vae.ipynb) or one Python file (vae.py)"
GRADER_SECONDS = 1080  # the grader limits a submission to 900 s; this stops a stuck grader within 20 minutes
_IGNORED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}


def candidates(folder: Path) -> list[Path]:
    """The notebooks and .py files uploaded, at any depth; hidden files and OS leftovers skipped."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and path.suffix in (".ipynb", ".py")
                  and not any(part.startswith(".") or part in _IGNORED_FOLDERS
                              for part in path.relative_to(folder).parts))


def symbolic_links(folder: Path) -> list[str]:
    """The symbolic links anywhere in the upload (never followed), relative to it."""
    found = []
    for root, folders, files in os.walk(folder):
        found += [str((Path(root) / name).relative_to(folder)) for name in folders + files
                  if (Path(root) / name).is_symlink()]
    return sorted(found)


def choose(files: list[Path]) -> Path | None:
    """The notebook when there is one (vae.ipynb among several), else the .py file (vae.py
    among several); None when there is none or it is ambiguous."""
    for suffix in (".ipynb", ".py"):
        found = [path for path in files if path.suffix == suffix]
        named = [path for path in found if path.name == "vae" + suffix]
        if len(found) == 1 or len(named) == 1:
            return found[0] if len(found) == 1 else named[0]
        if found:
            return None
    return None


def what_was_found(folder: Path, files: list[Path]) -> str:
    uploaded = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if files:
        return "several candidates: " + ", ".join(str(p.relative_to(folder)) for p in files)
    if uploaded:
        return "no notebook or .py file (uploaded: " + ", ".join(uploaded[:10]) + ")"
    return "no files at all"


def failure(message: str, seconds: float) -> dict:
    """A results.json with score 0 and one failed entry, shown to the student at once."""
    return {
        "score": 0, "execution_time": round(seconds), "output": message,
        "visibility": "visible", "stdout_visibility": "hidden",
        "tests": [{"name": "Grading your submission", "number": "0", "score": 0, "max_score": 0,
                   "status": "failed", "output": message, "visibility": "visible"}],
    }


def run_grader(submission: Path, results: Path) -> str | None:
    """Run `vae-assignment grade`; None when it wrote results.json, else a short reason."""
    with tempfile.TemporaryDirectory(prefix="vae-gradescope-") as scratch:
        command = ["vae-assignment", "grade", str(submission), "--visible-checks", "--gradescope", str(results),
                   "--jobs", "1", "--db", str(Path(scratch) / "grades.sqlite")]
        print("$ " + " ".join(command), flush=True)
        try:
            grader = subprocess.Popen(command, cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            return f"the `vae-assignment` command could not be started ({error.strerror}): did setup.sh finish?"
        try:
            out, err = grader.communicate(timeout=GRADER_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(grader.pid, signal.SIGKILL)
            grader.communicate()
            return f"grading took more than {GRADER_SECONDS} s and was stopped"
    stderr = err.decode(errors="replace")
    print(out.decode(errors="replace") + stderr, flush=True)
    _print_traceback_log(stderr)
    if grader.returncode == 0:
        try:
            if isinstance(json.loads(results.read_text()).get("score"), (int, float)):
                return None
        except (OSError, ValueError, AttributeError):
            pass
        return "the grader finished without writing a valid results.json"
    lines = [line for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("vae-assignment")] or lines[-1:]
    return f"{said[0][:500] if said else 'no message'} (exit status {grader.returncode})"


def _print_traceback_log(stderr: str) -> None:
    """The grader's traceback log, which the instructor cannot reach once the container is gone."""
    match = re.search(r"full traceback in (\S+?)\)", stderr)
    if match and Path(match.group(1)).is_file():
        print(Path(match.group(1)).read_text(errors="replace"), flush=True)


def main() -> int:
    started = time.monotonic()
    root = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    folder, results = root / "submission", root / "results" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.unlink(missing_ok=True)  # never report an earlier run's results
    try:
        files, links = candidates(folder), symbolic_links(folder)
        chosen = choose(files)
        if links:  # it could point at anything on the grading machine: the grader reads no link
            problem = (f"Your submission holds symbolic links ({', '.join(links[:5])}), which are refused: "
                       "upload the files themselves. Submit again.")
        elif chosen is None:
            problem = f"Expected {EXPECTED} in your submission, but found {what_was_found(folder, files)}. Submit again."
        else:
            print(f"grading {chosen}", flush=True)
            reason = run_grader(chosen, results)
            problem = None if reason is None else (
                f"The autograder failed while grading your submission: {reason}. "
                "This is a fault of the autograder, not of your work: please tell the course staff.")
    except Exception as error:  # noqa: BLE001 - whatever breaks here, Gradescope must get a results.json
        problem = f"The autograder failed: {type(error).__name__}: {error}. Please tell the course staff."
    if problem is not None:
        print(problem, flush=True)
        results.write_text(json.dumps(failure(problem, time.monotonic() - started), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
