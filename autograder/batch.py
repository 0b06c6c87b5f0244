"""Grade many submissions on a local process pool or a Dask cluster, keeping each result at once.

Each grading process (a pool process or a Dask worker) is trusted: it holds the hidden tests
and the reference, and starts one sandboxed worker per submission. Submissions travel as
bytes and results come back as plain records; this process validates each record and stores
it (autograder.store) as soon as it arrives, so a batch that is killed resumes where it
stopped. Records are returned sorted by student id, so the output does not depend on the
order in which they were graded.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from tqdm import tqdm

from autograder.collect import Submission, SubmissionError, UsageError
from autograder.grading import grade, prepare_process, unreadable
from autograder.record import InvalidRecord, validate_record
from autograder.store import Key, ResultStore
from autograder.version import grader_version
from autograder.isolation import sandbox
from autograder.isolation.limits import Limits
from autograder.settings import Settings

STOP_SECONDS = 10.0  # for pool processes to stop after Ctrl-C before they are killed
STOPPED_STATUS = 128 + signal.SIGTERM  # a pool process's exit status after it was stopped


@dataclass
class BatchResult:
    records: list[dict]  # every submission's record, sorted by id
    timings: dict[str, dict] = field(default_factory=dict)  # by id, of those graded now: see _grade_task
    reused: int = 0  # records taken from the store
    failures: dict[str, str] = field(default_factory=dict)  # id: why the grader failed on it (nothing stored)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: grading stopped, no process left; `kept` of `total` are stored."""

    def __init__(self, kept: int, total: int):
        super().__init__(f"{kept} of {total} graded and kept")
        self.kept, self.total = kept, total


class GraderFailed(RuntimeError):
    """The grader itself failed on some submissions (not the students' code)."""


# A local pool process stops at once on SIGTERM (sent by the grader on Ctrl-C, or by the kernel
# when the grader dies: see _start_pool_process) and on SIGINT (Ctrl-C on a terminal reaches the
# whole process group). It first kills the sandboxed workers it started, each in a session of
# its own that no signal to the grader reaches, so no process outlives the batch.
_stopping = False
_in_task = False
# The hidden tests run under pytest, which is not thread-safe: a Dask worker with several threads
# grades one submission at a time all the same.
_one_at_a_time = threading.Lock()


def _kill_children() -> None:
    """SIGKILL this process's children (Linux /proc) and their process groups."""
    me = str(os.getpid())
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                parent = stat.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):  # not a process, or gone
            continue
        if parent == me:
            pid = int(entry.name)
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == pid:  # a worker: its own session and process group
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


def _stop(signum: int, frame: object) -> None:
    global _stopping
    if _stopping:
        return
    _stopping = True
    _kill_children()
    if not _in_task:
        os._exit(STOPPED_STATUS)
    raise KeyboardInterrupt  # unwinds grade() (pytest stops, the Student removes its folder), then exits


def _exit_if_stopping() -> None:
    """A stopping pool process exits, so that nothing it graded is kept: tests may have failed
    because its worker was killed. Its pool is then broken, which only a stopping grader sees."""
    if _stopping:
        os._exit(STOPPED_STATUS)


def _start_pool_process(grader_pid: int, settings: Settings) -> None:
    """Initializer of each local pool process."""
    prepare_process(settings)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the grader died (even by SIGKILL)
    if os.getppid() != grader_pid:  # it died before that
        _stop(signal.SIGTERM, None)


def _grade_task(submission: Submission, settings: Settings, visible_checks: bool) -> tuple[dict, dict, str]:
    """Grade in a grading process: (record, timing, this process's grader version). Timing is
    where the time went: total, worker start, model training (seconds)."""
    global _in_task
    prepare_process(settings)  # a Dask worker has no initializer
    with _one_at_a_time:
        _exit_if_stopping()
        timing: dict = {}
        started = time.perf_counter()
        _in_task = True
        try:
            record = grade(submission, settings, timing, visible_checks=visible_checks)
        except BaseException:
            _exit_if_stopping()
            raise
        finally:
            _in_task = False
        _exit_if_stopping()
    return record, {"total": time.perf_counter() - started, **timing}, grader_version()


def _grade_on_dask_worker(submission: Submission, limits: Limits, visible_checks: bool) -> tuple[dict, dict, str]:
    """_grade_task on a Dask worker, another machine perhaps: the batch's limits, and the
    rest of the settings (isolation, worker start, cache folder) from that worker's environment."""
    return _grade_task(submission, Settings.from_environment(limits=limits), visible_checks)


def _checked_result(future: Future, submission: Submission, remote: bool) -> tuple[dict, dict]:
    """The validated (record, timing) of a finished task, or the exception saying why not.
    A `remote` grading process (a Dask worker) must run the same grader as this process."""
    record, timing, version = future.result()
    if remote and version != grader_version():
        raise GraderFailed(f"graded with grader version {version}, but this grader is {grader_version()}: "
                           "install the same vae-assignment on every Dask worker")
    validate_record(record)
    if record["id"] != submission.id or record["path"] != submission.where:
        raise InvalidRecord(f"the record is for {record['id']} ({record['path']})")
    return record, timing


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) must not cut the stopping of the pool short."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_pool(executor: ProcessPoolExecutor) -> None:
    """Stop the pool at once: its processes kill their workers and exit, or are killed."""
    with _uninterruptible():
        processes = list(executor._processes.values())  # the executor has no public list of them
        for process in processes:
            process.terminate()  # see _stop
        waiting = {process.sentinel: process for process in processes}
        deadline = time.monotonic() + STOP_SECONDS
        while waiting and time.monotonic() < deadline:
            for sentinel in wait(list(waiting), deadline - time.monotonic()):
                del waiting[sentinel]
        for process in waiting.values():
            process.kill()
        executor.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _local_pool(jobs: int, settings: Settings) -> Iterator[Executor]:
    context = multiprocessing.get_context("spawn")  # no inherited threads or torch state
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_pool_process,
                                   initargs=(os.getpid(), settings))
    try:
        yield executor
    except BaseException:
        _stop_pool(executor)
        raise
    executor.shutdown(wait=True)


@contextlib.contextmanager
def _dask_cluster(address: str) -> Iterator[Executor]:
    """An executor on the Dask cluster whose scheduler is at `address`. A worker that dies
    while grading has its tasks rescheduled by Dask (allowed-failures, 3 by default)."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'vae-assignment[dask]'") from None
    try:
        client = Client(address)  # waits distributed.comm.timeouts.connect (30 s unless configured)
    except (OSError, TimeoutError, ValueError) as error:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    executor = client.get_executor(pure=False)
    try:
        yield executor
    finally:
        executor.shutdown(wait=False)  # cancels what is left (nothing after a complete batch)
        client.close()


def _look_up(submissions: list[Submission], store: ResultStore | None, regrade: bool,
             version: str, result: BatchResult,
             settings: Settings) -> tuple[dict[str, dict], list[tuple[Submission, Key]]]:
    """Read each submission once (what is hashed is what is graded): the records known without
    grading (stored, or of a file that cannot be read) by id, and the submissions to grade."""
    known: dict[str, dict] = {}
    pending: list[tuple[Submission, Key]] = []
    for submission in submissions:
        try:
            loaded = submission.loaded()
        except SubmissionError as error:  # refused, too large, or not readable: its record says why
            known[submission.id] = unreadable(submission, str(error), sandbox.detect(settings))
            continue
        key = Key(submission.id, loaded.sha256, version)
        stored = None if store is None or regrade else store.get(key)
        if stored is None:
            pending.append((loaded, key))
        else:
            known[submission.id] = {**stored, "path": submission.where}  # the folder may have moved
            result.reused += 1
    return known, pending


def grade_batch(submissions: list[Submission], *, jobs: int = 2, settings: Settings | None = None,
                store: ResultStore | None = None, regrade: bool = False, scheduler: str | None = None,
                visible_checks: bool = False, progress: bool | None = None) -> BatchResult:
    """Grade `submissions` on `jobs` local processes, or on the Dask cluster at `scheduler`.
    With a store, what it holds for the same bytes and grader is reused (unless `regrade`) and
    each new record is stored as it arrives. Ctrl-C raises Interrupted once grading stopped.
    `visible_checks`: records also hold the visible checks' results (see grading.grade).
    `settings`: the entry point's (Settings.from_environment() when not given)."""
    settings = settings or Settings.from_environment()
    progress = sys.stderr.isatty() if progress is None else progress
    version = grader_version() + ("+visible-checks" if visible_checks else "")  # records differ with them
    result = BatchResult(records=[])
    stored_now = 0
    try:
        records, pending = _look_up(submissions, store, regrade, version, result, settings)
        if pending:
            with _dask_cluster(scheduler) if scheduler else _local_pool(jobs, settings) as executor:
                task, sent = (_grade_on_dask_worker, settings.limits) if scheduler else (_grade_task, settings)
                futures = {executor.submit(task, loaded, sent, visible_checks): (loaded, key)
                           for loaded, key in pending}
                for future in tqdm(as_completed(futures), total=len(futures), disable=not progress,
                                   desc="grading", unit="submission"):
                    loaded, key = futures[future]
                    try:
                        record, timing = _checked_result(future, loaded, remote=scheduler is not None)
                    except Exception as error:  # noqa: BLE001 - the grader's failure on this submission only
                        result.failures[loaded.id] = f"{type(error).__name__}: {error}"
                        continue
                    if store is not None:
                        store.put(key, record)
                        stored_now += 1
                    records[loaded.id], result.timings[loaded.id] = record, timing
    except KeyboardInterrupt:
        raise Interrupted(result.reused + stored_now, len(submissions)) from None
    result.records = [records[s.id] for s in sorted(submissions, key=lambda s: s.id) if s.id in records]
    return result


def grade_all(submissions: list[Submission], *, jobs: int = 2, settings: Settings | None = None,
              visible_checks: bool = False, progress: bool | None = None) -> tuple[list[dict], list[dict]]:
    """(records sorted by id, timing per submission in the same order), on a local pool and
    stored nowhere; GraderFailed when the grader failed on any submission."""
    batch = grade_batch(submissions, jobs=jobs, settings=settings, visible_checks=visible_checks, progress=progress)
    if batch.failures:
        raise GraderFailed("; ".join(f"{student}: {why}" for student, why in batch.failures.items()))
    return batch.records, [batch.timings.get(record["id"], {}) for record in batch.records]
