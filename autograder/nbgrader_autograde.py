"""`nbgrader autograde` with scores a student's kernel cannot forge, and the kernel sandboxed.

The course's `nbgrader_config.py` (written by `vae-assignment release`) puts
`SandboxedAutograde` in place of nbgrader's `Execute` in `Autograde.autograde_preprocessors`.
For each submission it gets the notebook as nbgrader holds it in memory, sanitized (outputs
cleared, locked cells restored from the gradebook), and:

1. starts the notebook's execution (the demonstrations whose plots the feedback shows) in the
   sandbox of the standalone grader's worker (`autograder/isolation/sandbox.py`: bubblewrap, uid 65534,
   no network, read-only system, only the student's own folder visible; the worker's rlimits),
   kernel and client both inside (`untrusted/notebook_runner.py`); the notebook goes in and
   comes out as JSON only;
2. meanwhile grades the same notebook with the standalone grader (`grading.grade`, in this
   process; the student's code runs only in its sandboxed worker): the trusted record;
3. keeps from the sandbox's notebook only the outputs of the cells that are not graded, after
   nbformat validated it, and sets every graded cell's outputs from the trusted record: the
   grader's messages as stdout and the problem's points as the cell's value, which nbgrader
   reads as partial credit. A graded cell without a trusted score gets an error output saying
   why, so nbgrader records 0 (a graded cell with no output and no error gets full credit).

Graded cells are not run in the kernel at all, so nothing the kernel prints, returns or leaves
on disk reaches the gradebook. Without bubblewrap the notebook runs with the worker's process
isolation and nbgrader's log says so; `SandboxedAutograde.require_sandbox = True` refuses.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Integer

from assignment.contract import PROBLEM_POINTS
from autograder.collect import Submission
from autograder.grading import grade, prepare_process
from autograder.isolation import sandbox
from autograder.isolation.limits import Limits
from autograder.isolation.process import start_limited
from autograder.settings import Settings
from autograder.untrusted import notebook_runner

CHECK_PREFIX = "check_"  # a problem's graded cell is check_<problem> (assignment/notebook.py)
MESSAGE_LINES = 25  # of each failed test's message in a graded cell's output
NOTEBOOK_BYTES = 64 * 2**20  # the most JSON read back from the sandbox
MISSING_SCORE = "TrustedScoreMissing"


class SandboxedAutograde(NbGraderPreprocessor):
    """nbgrader's Execute replaced: the student's notebook runs sandboxed, and the graded cells
    get the standalone grader's scores and messages (see the module's docstring)."""

    require_sandbox = Bool(False, help="Refuse to grade where bubblewrap cannot run, as "
                                       "`vae-assignment grade --require-sandbox` does.").tag(config=True)
    cell_timeout = Integer(300, help="Seconds each cell of the student's notebook may run.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        settings = Settings.from_environment(limits=Limits(require_sandbox=self.require_sandbox))
        isolation = sandbox.detect(settings)
        if not isolation.sandboxed:
            if self.require_sandbox:
                raise sandbox.SandboxUnavailable(f"not grading: SandboxedAutograde.require_sandbox is set and "
                                                 f"bubblewrap cannot run here ({isolation.reason})")
            self.log.warning("NO SANDBOX: the student's notebook runs as this user with process limits only "
                             "(%s)", isolation.reason)
        student = resources["nbgrader"]["student"]
        folder = Path(resources["metadata"]["path"])
        limits = settings.limits
        started = time.perf_counter()
        run = NotebookRun(without_graded_code(nb), folder, limits, isolation, self.cell_timeout)
        try:
            record, reason = trusted_record(student, folder / f"{resources['unique_key']}.ipynb", nb, settings, isolation)
            graded_after = time.perf_counter() - started
        finally:
            executed, problem = run.finish(limits.submission_seconds)
        seconds = f"graded in {graded_after:.1f} s, the notebook done at {time.perf_counter() - started:.1f} s"
        if problem:
            self.log.warning("%s: the notebook's own outputs are not shown: %s", student, problem)
        else:
            copy_outputs(executed, nb)
        set_graded_outputs(nb, record, reason)
        if record is not None:
            scores = ", ".join(f"{name} {p['score']:g}" for name, p in record["problems"].items())
            self.log.info("%s: %g / %g from the standalone grader (%s; %s); isolation: %s", student,
                          record["score"], record["max_score"], scores, seconds, sandbox.describe(isolation))
        else:
            self.log.error("%s: no trusted score, every graded cell gets 0: %s", student, reason)
        return nb, resources


def trusted_record(student: str, path: Path, nb: NotebookNode, settings: Settings,
                   isolation: sandbox.Isolation) -> tuple[dict | None, str]:
    """The standalone grader's record of the notebook as nbgrader holds it, or why there is none."""
    prepare_process(settings)
    try:
        return grade(Submission(student, path, nbformat.writes(nb).encode()), settings, isolation=isolation), ""
    except sandbox.SandboxUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the grader means: no trusted score
        return None, f"the grader failed: {type(error).__name__}: {error}"


def is_graded_code(cell: NotebookNode) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade", False) and not meta.get("solution", False)


def without_graded_code(nb: NotebookNode) -> NotebookNode:
    """What the kernel runs: the notebook with its graded cells emptied (their outputs are the
    grader's), as JSON-able plain data."""
    copy = nbformat.from_dict(json.loads(nbformat.writes(nb)))
    for cell in copy.cells:
        if is_graded_code(cell):
            cell.source = ""
    return copy


class NotebookRun:
    """The student's notebook executing in the sandbox, started at once; `finish` collects it."""

    def __init__(self, nb: NotebookNode, folder: Path, limits: Limits, isolation: sandbox.Isolation,
                 cell_timeout: int):
        self.workdir = tempfile.mkdtemp(prefix="vae-notebook-")
        command = [sys.executable, "-I", str(Path(notebook_runner.__file__).resolve()), str(folder.resolve()),
                   str(cell_timeout)]
        command = sandbox.wrap(command, workdir=self.workdir, isolation=isolation, shared=(folder.resolve(),))
        self.process = start_limited(command, self.workdir, limits, isolation, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout, self.stderr = bytearray(), bytearray()
        self.threads = [threading.Thread(target=self._send, args=(nbformat.writes(nb).encode(),), daemon=True),
                        threading.Thread(target=_drain, args=(self.process.stdout, self.stdout, NOTEBOOK_BYTES),
                                         daemon=True),
                        threading.Thread(target=_drain, args=(self.process.stderr, self.stderr, 4096), daemon=True)]
        for thread in self.threads:
            thread.start()

    def _send(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            self.process.stdin.close()
        except OSError:  # it died first: finish() says why
            pass

    def finish(self, timeout: float) -> tuple[NotebookNode | None, str]:
        """The executed notebook, or None and why not; the sandbox is gone afterwards."""
        try:
            self.process.wait(timeout=timeout)
            problem = ""
        except subprocess.TimeoutExpired:
            problem = f"it ran past {timeout:g} s"
        self.process.kill()  # the whole session: the kernel too
        for thread in self.threads:
            thread.join(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if not problem and self.process.returncode != 0:
            lines = self.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
            problem = f"its run ended with status {self.process.returncode}: {lines[-1][:300]}"
        if not problem and len(self.stdout) >= NOTEBOOK_BYTES:
            problem = f"its outputs exceed {NOTEBOOK_BYTES // 2**20} MiB"
        if problem:
            return None, problem
        try:
            executed = nbformat.reads(self.stdout.decode("utf-8"), as_version=4)
            nbformat.validate(executed)
        except Exception as error:  # noqa: BLE001 - nbformat raises many kinds; the text is untrusted
            return None, f"the sandbox sent back no valid notebook ({type(error).__name__})"
        return executed, ""


def _drain(stream, into: bytearray, limit: int) -> None:
    for chunk in iter(lambda: stream.read1(1 << 16), b""):
        into += chunk[:max(0, limit - len(into))]
    stream.close()


def copy_outputs(executed: NotebookNode | None, nb: NotebookNode) -> None:
    """The outputs of `nb`'s ungraded code cells, from the sandbox's copy; nothing else of it
    (sources and metadata stay nbgrader's), and nothing when the cells do not line up."""
    if executed is None or len(executed.cells) != len(nb.cells):
        return
    for ours, theirs in zip(nb.cells, executed.cells):
        if ours.cell_type == "code" and theirs.cell_type == "code" and not is_graded_code(ours):
            ours.outputs = theirs.outputs
            ours.execution_count = theirs.execution_count


def set_graded_outputs(nb: NotebookNode, record: dict | None, reason: str) -> None:
    """Every graded code cell's outputs from the trusted record (an error where it has none)."""
    for cell in nb.cells:
        if not is_graded_code(cell):
            continue
        problem = cell.metadata["nbgrader"].get("grade_id", "").removeprefix(CHECK_PREFIX)
        if record is None:
            cell.outputs = [missing_score(reason)]
        elif problem not in PROBLEM_POINTS or problem not in record["problems"]:
            cell.outputs = [missing_score(f"{cell.metadata['nbgrader'].get('grade_id')!r} is not the graded "
                                          f"cell of a problem ({', '.join(CHECK_PREFIX + p for p in PROBLEM_POINTS)})")]
        else:
            result = record["problems"][problem]
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text=summary(problem, result, record["error"]) + "\n"),
                nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(result["score"]))},
                                       execution_count=None),
            ]
        cell.execution_count = None


def missing_score(reason: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=MISSING_SCORE, evalue=reason,
                                  traceback=[f"{MISSING_SCORE}: no score from the sandboxed grader, so 0 "
                                             f"points: {reason}"])


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
