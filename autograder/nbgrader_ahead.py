"""The rest of an `nbgrader autograde` run, graded ahead while nbgrader walks its list.

SandboxedAutograde (nbgrader_autograde.py) starts a `GradingAhead` at nbgrader's first notebook
with the run's plan (nbgrader_plan.py). In a thread of its own it then, in nbgrader's order:

1. refuses the submissions that hold a symbolic link, and sanitizes the others as nbgrader will
   (`Sanitizer`); each sanitized notebook's sandboxed run starts at once on a thread pool of
   `jobs` threads (the demonstrations' outputs, when the course config asks for them);
2. takes from the grader's store (store.py, a SQLite file in the course directory) the records
   of notebooks graded before with the same bytes by the same grader: a run that was killed
   resumes where it stopped;
3. grades the others with the standalone grader's process pool (`batch.grade_batch`, `jobs`
   processes), which stores each record as it arrives; the store here also hands it on.

`take` gives nbgrader's notebook its record and run: the ones made ahead when the notebook
nbgrader hands over is, byte for byte, the one sanitized ahead; None otherwise (the caller then
grades it where it stands). Nothing here writes nbgrader's gradebook or its files: nbgrader does,
one notebook after another, as always.
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from autograder.batch import grade_batch
from autograder.collect import Submission
from autograder.nbgrader_plan import PlannedNotebook, Sanitizer, links_in_submission
from autograder.settings import Settings
from autograder.store import Key, ResultStore
from autograder.version import grader_version


@dataclass
class Ahead:
    """One planned notebook: its sanitized text, its record (or why none) and its sandboxed run."""
    planned: PlannedNotebook
    submission_id: str
    path: Path  # where nbgrader writes the autograded notebook (what the record names)
    content: str | None = None  # as nbgrader will hand it over; None: not sanitized (see problem)
    problem: str = ""  # why it was not sanitized or graded ahead
    record: dict | None = None
    failure: str = ""  # why the pool gave no record
    reused: bool = False  # the record came from the store
    notebook_run: Future | None = None  # -> (executed notebook or None, why not)
    graded: threading.Event = field(default_factory=threading.Event)


class _HandingOnStore(ResultStore):
    """The grader's store, telling GradingAhead of each record as grade_batch stores it."""

    def __init__(self, path: Path, on_record: Callable[[str, dict], None]):
        super().__init__(path)
        self.on_record = on_record

    def put(self, key: Key, record: dict) -> None:
        super().put(key, record)
        self.on_record(key.submission, record)


class GradingAhead:
    """See the module's docstring. `run_notebook(entry)`, when given, runs the sandboxed notebook
    of a sanitized notebook and returns (executed notebook or None, why not); on `jobs` threads."""

    def __init__(self, converter, entries: list[Ahead], *, jobs: int, settings: Settings, store: Path,
                 run_notebook: Callable[[Ahead], tuple] | None, log: logging.Logger):
        self.entries = {entry.submission_id: entry for entry in entries}
        self.jobs, self.settings, self.store_path, self.log = jobs, settings, store, log
        self.run_notebook = run_notebook
        self.sanitizer = Sanitizer(converter)
        self.converter = converter
        self.reused = 0
        # Set once every notebook is sanitized: until then nbgrader, waiting for its first record,
        # does not write the gradebook that the sanitizing reads.
        self.sanitized = threading.Event()
        self.notebook_runs = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="vae-notebook") \
            if run_notebook else None
        self.thread = threading.Thread(target=self._work, name="vae-grading-ahead", daemon=True)
        self.thread.start()

    def take(self, submission_id: str, content: str) -> tuple[Ahead | None, str]:
        """(the entry made ahead for this notebook, once graded, "") if `content` (the notebook
        as nbgrader hands it over) is what was graded and has a record; else (None, why not)."""
        entry = self.entries.get(submission_id)
        if entry is None:
            return None, "it was not in the plan made at the first notebook"
        self.sanitized.wait()
        if entry.content is None:
            return None, entry.problem
        if entry.content != content:
            return None, "nbgrader hands over another notebook than the one sanitized ahead"
        entry.graded.wait()
        if entry.record is None:
            return None, entry.failure or entry.problem or "no record came back"
        return entry, ""

    def close(self, *, stop_grading: bool = False) -> None:
        """Drop the notebook runs still queued (those started end within their sandbox's limits);
        `stop_grading`: also stop the grading processes now (Ctrl-C), which keep what they stored."""
        if self.notebook_runs is not None:
            self.notebook_runs.shutdown(wait=False, cancel_futures=True)
        if stop_grading:
            for process in multiprocessing.active_children():  # grade_batch's pool processes
                process.terminate()  # each kills its sandboxed worker and exits (batch._stop)

    def _work(self) -> None:
        try:
            graded_ahead = self._sanitize_all()
            with _HandingOnStore(self.store_path, self._graded) as store:
                to_grade = []
                for entry in graded_ahead:
                    key = Key(entry.submission_id, Submission(entry.submission_id, entry.path,
                                                              entry.content.encode()).sha256, grader_version())
                    stored = store.get(key)
                    if stored is None:
                        to_grade.append(entry)
                    else:
                        self.reused += 1
                        entry.reused = True
                        self._graded(entry.submission_id, {**stored, "path": str(entry.path)})
                if self.reused:
                    self.log.info("%d notebook(s) graded before with the same grader, taken from %s",
                                  self.reused, self.store_path)
                if to_grade:
                    submissions = [Submission(e.submission_id, e.path, e.content.encode()) for e in to_grade]
                    batch = grade_batch(submissions, jobs=self.jobs, settings=self.settings, store=store,
                                        progress=False)
                    for submission_id, why in batch.failures.items():
                        self.entries[submission_id].failure = why
        except Exception as error:  # noqa: BLE001 - each notebook left is graded where nbgrader stands
            self.log.error("grading ahead stopped (%s: %s): the notebooks left are graded one at a time",
                           type(error).__name__, error)
            for entry in self.entries.values():
                entry.problem = entry.problem or f"grading ahead stopped: {type(error).__name__}: {error}"
        finally:
            self.sanitized.set()
            for entry in self.entries.values():
                entry.graded.set()

    def _sanitize_all(self) -> list[Ahead]:
        """Every entry sanitized (or refused, or why not), in order; those to grade ahead."""
        graded_ahead = []
        for entry in self.entries.values():
            planned = entry.planned
            if links_in_submission(self.converter, planned.student, planned.assignment):
                entry.problem = "refused: it holds symbolic links"
            else:
                try:
                    entry.content = self.sanitizer(planned)
                except Exception as error:  # noqa: BLE001 - nbgrader meets the same error itself
                    entry.problem = f"not sanitized ahead: {type(error).__name__}: {error}"
            if entry.content is not None:
                graded_ahead.append(entry)
                if self.notebook_runs is not None:
                    entry.notebook_run = self.notebook_runs.submit(self.run_notebook, entry)
        self.sanitized.set()
        return graded_ahead

    def _graded(self, submission_id: str, record: dict) -> None:
        entry = self.entries[submission_id]
        entry.record = record
        entry.graded.set()
