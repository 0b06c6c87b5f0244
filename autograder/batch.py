"""Grade many submissions on a local process pool, with a progress bar.

Each pool process is trusted (it holds the hidden tests and the reference) and starts one
sandboxed worker per submission. Results come back as plain records, sorted by student id,
so the output does not depend on the order in which the pool finished.
"""
from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed

from tqdm import tqdm

from autograder.collect import Submission
from autograder.grading import grade, prepare_process
from autograder.worker_client import Limits


def _grade_timed(submission: Submission, limits: Limits) -> tuple[dict, dict]:
    """The record, and where its time went: total, worker start, model training (seconds)."""
    timing: dict = {}
    started = time.perf_counter()
    record = grade(submission, limits, timing)
    return record, {"total": time.perf_counter() - started, **timing}


def grade_all(submissions: list[Submission], *, jobs: int = 2, limits: Limits = Limits(),
              executor: Executor | None = None, progress: bool | None = None) -> tuple[list[dict], list[dict]]:
    """(records sorted by id, timing per submission in the same order: see _grade_timed)."""
    progress = sys.stderr.isatty() if progress is None else progress
    own_executor = executor is None
    if own_executor:
        context = multiprocessing.get_context("spawn")  # no inherited threads or torch state
        executor = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=prepare_process)
    results: dict[str, tuple[dict, dict]] = {}
    try:
        futures = {executor.submit(_grade_timed, s, limits): s for s in submissions}
        for future in tqdm(as_completed(futures), total=len(futures), disable=not progress,
                           desc="grading", unit="submission"):
            results[futures[future].id] = future.result()
    finally:
        if own_executor:
            executor.shutdown(wait=True, cancel_futures=True)
    ordered = [results[s.id] for s in sorted(submissions, key=lambda s: s.id)]
    return [record for record, _ in ordered], [timing for _, timing in ordered]
