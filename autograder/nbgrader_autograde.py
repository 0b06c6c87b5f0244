"""`nbgrader autograde` with scores a student's kernel cannot forge, graded ahead in parallel.

The course's `nbgrader_config.py` (written by `vae-assignment release`) puts
`SandboxedAutograde` in place of nbgrader's `Execute` in `Autograde.autograde_preprocessors`.
nbgrader calls it once per notebook, one after another, with the notebook sanitized (outputs
cleared, locked cells restored from the gradebook). For each it:

1. refuses a submission folder that holds a symbolic link (`SubmissionRefused`: nbgrader then
   removes its copy and reports the student as failed);
2. gets the standalone grader's record of exactly that notebook (the student's code runs only in
   the grader's sandboxed worker): at the run's first notebook a `GradingAhead`
   (nbgrader_ahead.py) starts grading every notebook this run will autograde on the grader's
   process pool (`jobs` processes, `SandboxedAutograde.ahead`), so later notebooks find theirs
   ready; a notebook that is not the one graded ahead is graded here, in nbgrader's process;
3. with `execute_notebook`, runs the notebook's own cells (the demonstrations, for the feedback)
   in the sandbox of the grader's worker (bubblewrap, uid 65534, no network, read-only system,
   only the release's public files visible; the worker's rlimits), kernel and client both inside
   (`untrusted/notebook_runner.py`), ahead too on `jobs` threads; graded cells are emptied first,
   and of what comes back only the text and image outputs of the other cells are kept;
4. sets every graded cell's outputs from the trusted record: the grader's messages as stdout and
   the problem's points as the cell's value, which nbgrader reads as partial credit. A graded cell
   without a trusted score gets an error output saying why, so nbgrader records 0 (a graded cell
   with no output and no error gets full credit);
5. logs a line per notebook (student, score, seconds, done / total, time left) and, after the
   last one, a summary.

nbgrader writes its gradebook and files itself, notebook after notebook, as in a serial run.
Without bubblewrap the notebook runs with the worker's process isolation and nbgrader's log says
so; `SandboxedAutograde.require_sandbox = True` refuses.
"""
from __future__ import annotations

import atexit
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbgrader.converters import Autograde
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

from assignment.contract import PROBLEM_POINTS
from autograder.collect import Submission
from autograder.grading import grade, prepare_process
from autograder.isolation import sandbox
from autograder.isolation.limits import Limits
from autograder.isolation.process import start_limited
from autograder.nbgrader_ahead import Ahead, GradingAhead
from autograder.nbgrader_html import safe_outputs
from autograder.nbgrader_plan import PlannedNotebook, links_in_submission, planned_notebooks
from autograder.settings import Settings
from autograder.untrusted import notebook_runner

CHECK_PREFIX = "check_"  # a problem's graded cell is check_<problem> (assignment/notebook.py)
MESSAGE_LINES = 25  # of each failed test's message in a graded cell's output
NOTEBOOK_BYTES = 64 * 2**20  # the most JSON read back from the sandbox
MISSING_SCORE = "TrustedScoreMissing"


class SubmissionRefused(Exception):
    """A submission nbgrader must not autograde (it holds symbolic links); the message says why."""


class SandboxedAutograde(NbGraderPreprocessor):
    """nbgrader's Execute replaced: the graded cells get the standalone grader's scores and
    messages, graded ahead in parallel; the student's notebook runs sandboxed (see the module)."""

    require_sandbox = Bool(False, help="Refuse to grade where bubblewrap cannot run, as "
                                       "`vae-assignment grade --require-sandbox` does.").tag(config=True)
    cell_timeout = Integer(300, help="Seconds each cell of the student's notebook may run.").tag(config=True)
    jobs = Integer(2, help="Grading processes, and sandboxed notebook runs at a time.").tag(config=True)
    ahead = Bool(True, help="Grade the run's notebooks ahead on `jobs` processes (False: each one in "
                            "nbgrader's process when nbgrader gets to it).").tag(config=True)
    execute_notebook = Bool(False, help="Run each notebook's own cells in the sandbox, so that the feedback "
                                       "shows their outputs (about 11 s of CPU per notebook, 2-3 "
                                       "times the grading).").tag(config=True)
    results_db = Unicode("autograde_results.sqlite", help="The grader's store of records, in the course "
                                                         "directory: a rerun reuses what it holds.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        settings = Settings.from_environment(limits=Limits(require_sandbox=self.require_sandbox))
        isolation = sandbox.detect(settings)
        if not isolation.sandboxed and self.require_sandbox:
            raise sandbox.SandboxUnavailable(f"not grading: SandboxedAutograde.require_sandbox is set and "
                                             f"bubblewrap cannot run here ({isolation.reason})")
        ids = resources["nbgrader"]
        student, assignment, notebook = ids["student"], ids["assignment"], ids["notebook"]
        run = ClassRun.of(self, student, assignment, settings, isolation)
        if run.converter is not None:
            if run.ahead is not None:
                run.ahead.sanitized.wait()  # nbgrader writes the gradebook after a refusal: not while it is read
            links = links_in_submission(run.converter, student, assignment)
            if links:
                run.refused(student, links)
                raise SubmissionRefused(
                    f"{student}: not autograded: {', '.join(map(str, links))} is a symbolic link. A submission "
                    "must hold plain files only (nbgrader copies what a link points to, which can be any file "
                    "this user may read); remove the link, or ask the student to hand in the file itself")
        path = Path(resources["metadata"]["path"]) / f"{resources['unique_key']}.ipynb"
        graded = run.graded(student, assignment, notebook, path, nb)
        if graded.notebook_problem:
            self.log.warning("%s: the notebook's own outputs are not shown: %s", student, graded.notebook_problem)
        else:
            copy_outputs(graded.executed, nb)
        set_graded_outputs(nb, graded.record, graded.reason)
        run.done(student, graded)
        return nb, resources


@dataclass
class Graded:
    """What one notebook got: its trusted record (or why none) and its sandboxed run."""
    record: dict | None
    reason: str  # why there is no record
    executed: NotebookNode | None = None
    notebook_problem: str = ""  # why the notebook's own outputs are not shown ("" when they are, or not run)
    how: str = ""  # "graded ahead", "taken from the store", or "graded here" and why


@dataclass
class ClassRun:
    """One `nbgrader autograde` run, as SandboxedAutograde sees it across its notebooks (nbgrader
    makes a new preprocessor per notebook; this lives as long as nbgrader's Autograde)."""
    log: object
    settings: Settings
    isolation: sandbox.Isolation
    converter: Autograde | None
    release: Path  # the release's public files, all a notebook run sees of the course
    execute: bool
    cell_timeout: int
    total: int  # notebooks this run autogrades from the first one on (0: unknown)
    ahead: GradingAhead | None = None
    started: float = field(default_factory=time.perf_counter)
    last: float = field(default_factory=time.perf_counter)  # when the notebook before was done
    finished: int = 0
    no_score: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    summarised: bool = False

    @classmethod
    def of(cls, preprocessor: SandboxedAutograde, student: str, assignment: str, settings: Settings,
           isolation: sandbox.Isolation) -> ClassRun:
        """The run of nbgrader's Autograde that called `preprocessor` (made at its first notebook),
        or a run of one notebook where nbgrader's Autograde is not the caller."""
        converter = getattr(getattr(preprocessor, "parent", None), "parent", None)
        if not isinstance(converter, Autograde):
            return cls.start(preprocessor, None, [], settings, isolation, Path.cwd() / "release" / assignment)
        run = _RUNS.get(id(converter))
        if run is None:
            coursedir = converter.coursedir
            planned = planned_notebooks(converter, student, assignment)
            release = Path(coursedir.format_path(coursedir.release_directory, ".", assignment)).resolve()
            run = _RUNS[id(converter)] = cls.start(preprocessor, converter, planned, settings, isolation, release)
        return run

    @classmethod
    def start(cls, preprocessor: SandboxedAutograde, converter: Autograde | None, planned: list[PlannedNotebook],
              settings: Settings, isolation: sandbox.Isolation, release: Path) -> ClassRun:
        log = preprocessor.log
        run = cls(log, settings, isolation, converter, release, preprocessor.execute_notebook,
                  preprocessor.cell_timeout, len(planned))
        if converter is None:
            return run
        if not isolation.sandboxed:
            log.warning("NO SANDBOX: the student's code runs as this user with process limits only (%s)",
                        isolation.reason)
        jobs = max(1, preprocessor.jobs)
        if preprocessor.ahead and planned:
            store = Path(converter.coursedir.root) / preprocessor.results_db
            entries = [Ahead(p, submission_id(*p.key), autograded_path(converter, p)) for p in planned]
            run.ahead = GradingAhead(converter, entries, jobs=jobs, settings=settings, store=store,
                                     run_notebook=run.run_notebook_ahead if run.execute else None, log=log)
        how = f"graded ahead on {jobs} process(es)" if run.ahead else "graded one at a time in this process"
        shown = "its cells run in the sandbox for the feedback" if run.execute else "its cells not run"
        log.info("autograding %d notebook(s): %s; each notebook %s; isolation: %s", len(planned), how, shown,
                 sandbox.describe(isolation))
        return run

    def graded(self, student: str, assignment: str, notebook: str, path: Path, nb: NotebookNode) -> Graded:
        """`nb`'s trusted record and sandboxed run: made ahead when they are for this very notebook,
        else made here (the notebook's run and the grading at the same time)."""
        ident = submission_id(student, assignment, notebook)
        why = ""
        if self.ahead is not None:
            try:
                entry, why = self.ahead.take(ident, nbformat.writes(nb))
                outcome = _outcome(entry.notebook_run) if entry is not None else (None, "")
            except KeyboardInterrupt:
                self.ahead.close(stop_grading=True)
                raise
            if entry is not None:
                return Graded(entry.record, "", *outcome, "taken from the store" if entry.reused else "graded ahead")
        finish_notebook_run = self.start_notebook_run(nb)
        record, reason = trusted_record(ident, path, nb, self.settings, self.isolation)
        return Graded(record, reason, *finish_notebook_run(), f"graded here: {why}" if why else "graded here")

    def start_notebook_run(self, nb: NotebookNode) -> Callable[[], tuple[NotebookNode | None, str]]:
        """Start `nb`'s sandboxed run (with `execute`); the function that waits for it and returns
        (the executed notebook or None, why not: "" when notebooks are not run)."""
        problem = ""
        if self.execute and not self.release.is_dir():
            problem = f"there is no release folder {self.release} (the notebook's data and course files)"
        elif self.execute:
            try:
                notebook_run = NotebookRun(without_graded_code(nb), self.release, self.settings.limits,
                                           self.isolation, self.cell_timeout)
            except OSError as error:
                problem = f"its sandbox could not start: {error}"
            else:
                return lambda: notebook_run.finish(self.settings.limits.submission_seconds)
        return lambda: (None, problem)

    def run_notebook_ahead(self, entry: Ahead) -> tuple[NotebookNode | None, str]:
        """GradingAhead's sandboxed run of a sanitized notebook (on its threads)."""
        return self.start_notebook_run(nbformat.reads(entry.content, as_version=4))()

    def refused(self, student: str, links: list[Path]) -> None:
        self.refusals.append(student)
        self._progress(student, "refused, the submission holds symbolic links: " + ", ".join(map(str, links)),
                       logging.ERROR)

    def done(self, student: str, graded: Graded) -> None:
        record = graded.record
        if record is None:
            self.no_score.append(student)
            self._progress(student, f"no trusted score, every graded cell gets 0: {graded.reason}", logging.ERROR)
        else:
            scores = ", ".join(f"{name} {p['score']:g}" for name, p in record["problems"].items())
            self._progress(student, f"{record['score']:g} / {record['max_score']:g} ({scores}), {graded.how}")

    def _progress(self, student: str, what: str, level: int = logging.INFO) -> None:
        """One line per notebook: done / total, the student, what it got, the seconds since the
        notebook before, and an estimate of the time left; the summary after the last."""
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        self.finished += 1
        if not self.total:
            self.log.log(level, "%s: %s; %.1f s", student, what, seconds)
            return
        elapsed, left = now - self.started, max(0, self.total - self.finished)
        self.log.log(level, "[%d/%d] %s: %s; %.1f s, %s so far, about %s left", self.finished, self.total, student,
                     what, seconds, _duration(elapsed), _duration(elapsed / self.finished * left))
        if self.finished >= self.total:
            self.summarise()

    def summarise(self) -> None:
        """The run's summary, once: after the last planned notebook, or at exit."""
        if self.summarised or self.converter is None:
            return
        self.summarised = True
        _RUNS.pop(id(self.converter), None)
        if self.ahead is not None:
            self.ahead.close()
        elapsed = time.perf_counter() - self.started
        graded = self.finished - len(self.no_score) - len(self.refusals)
        parts = [f"{graded} graded"]
        if self.no_score:
            parts.append(f"{len(self.no_score)} without a trusted score, so 0 ({', '.join(self.no_score)})")
        if self.refusals:
            parts.append(f"{len(self.refusals)} refused ({', '.join(self.refusals)})")
        if self.finished < self.total:
            parts.append(f"{self.total - self.finished} not reached (nbgrader stopped, or failed on them before grading)")
        reused = f"; {self.ahead.reused} taken from {self.ahead.store_path}" if self.ahead and self.ahead.reused else ""
        self.log.info("autograde finished: %d of %d notebook(s) in %s: %s%s; isolation: %s", self.finished,
                      self.total, _duration(elapsed), ", ".join(parts), reused, sandbox.describe(self.isolation))


# id of nbgrader's Autograde -> its ClassRun (which holds it), until the run's summary.
_RUNS: dict[int, ClassRun] = {}


@atexit.register
def _summarise_unfinished() -> None:
    """A run that ended before its last planned notebook (nbgrader failed on some) still says so."""
    for run in list(_RUNS.values()):
        run.summarise()


def _outcome(notebook_run: Future | None) -> tuple[NotebookNode | None, str]:
    """What a notebook run made ahead gave: (executed notebook or None, why not)."""
    if notebook_run is None:
        return None, ""
    try:
        return notebook_run.result()
    except Exception as error:  # noqa: BLE001 - its outputs are then not shown; the score does not depend on them
        return None, f"its run failed: {type(error).__name__}: {error}"


def submission_id(student: str, assignment: str, notebook: str) -> str:
    """The id of a notebook's record in the grader's store (a course may have several notebooks)."""
    return f"{student}/{assignment}/{notebook}"


def autograded_path(converter: Autograde, planned: PlannedNotebook) -> Path:
    """Where nbgrader writes the notebook's autograded copy (the path the record names)."""
    coursedir = converter.coursedir
    folder = coursedir.format_path(coursedir.autograded_directory, planned.student, planned.assignment)
    return Path(folder) / f"{planned.notebook}.ipynb"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def trusted_record(ident: str, path: Path, nb: NotebookNode, settings: Settings,
                   isolation: sandbox.Isolation) -> tuple[dict | None, str]:
    """The standalone grader's record of the notebook as nbgrader holds it, or why there is none."""
    prepare_process(settings)
    try:
        return grade(Submission(ident, path, nbformat.writes(nb).encode()), settings, isolation=isolation), ""
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
    """The student's notebook executing in the sandbox, started at once; `finish` collects it.
    The sandbox sees the release's public files (`public`, read-only), never the student's folder
    as nbgrader copied it."""

    def __init__(self, nb: NotebookNode, public: Path, limits: Limits, isolation: sandbox.Isolation,
                 cell_timeout: int):
        self.workdir = tempfile.mkdtemp(prefix="vae-notebook-")
        command = [sys.executable, "-I", str(Path(notebook_runner.__file__).resolve()), str(public.resolve()),
                   str(cell_timeout)]
        command = sandbox.wrap(command, workdir=self.workdir, isolation=isolation, shared=(public.resolve(),))
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
    """The text and image outputs of `nb`'s ungraded code cells, from the sandbox's copy (see
    nbgrader_html.safe_outputs); nothing else of it (sources and metadata stay nbgrader's), and
    nothing when the cells do not line up."""
    if executed is None or len(executed.cells) != len(nb.cells):
        return
    for ours, theirs in zip(nb.cells, executed.cells):
        if ours.cell_type == "code" and theirs.cell_type == "code" and not is_graded_code(ours):
            ours.outputs = safe_outputs(theirs.get("outputs", []))
            count = theirs.get("execution_count")
            ours.execution_count = count if isinstance(count, int) else None


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
