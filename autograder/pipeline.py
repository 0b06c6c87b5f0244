"""`vae-assignment grade`, composed in one place: collect the submissions, grade them (a local
process pool or a Dask cluster) keeping each record in the store as soon as it is graded, then
write the outputs (outputs.WRITERS) and the class report. cli.py only parses the arguments
into a GradeRequest."""
from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.settings import Settings

if TYPE_CHECKING:
    from autograder.collect import Submission

EXIT_OK, EXIT_GRADER_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class GradeRequest:
    """What to grade, how, and where the results go."""
    paths: list[Path]
    outputs: dict[str, Path] = field(default_factory=dict)  # a writer's option (outputs.WRITERS) -> its file
    report: Path | None = None  # the class report's folder (with grades.json unless outputs has "json")
    jobs: int = 2  # local grading processes (not with a scheduler)
    settings: Settings = field(default_factory=Settings)  # limits, isolation, worker start, cache folder
    db: Path = Path("grades.sqlite")
    regrade: bool = False
    scheduler: str | None = None  # tcp://HOST:PORT of a Dask scheduler
    visible_checks: bool = False  # records also hold the visible checks' results (what is graded, not an output)


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a batch system's time limit, `kill`) stops grading as Ctrl-C does: cleanly, resumable."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def grade(request: GradeRequest) -> int:
    """Grade, store, write, print the summary; the command's exit status."""
    # Imported here, not at the top: `vae-assignment --help` and the other commands stay quick.
    from autograder import outputs
    from autograder.batch import Interrupted, grade_batch
    from autograder.collect import find_submissions
    from autograder.isolation import sandbox
    from autograder.store import ResultStore, StoreError

    submissions = find_submissions(request.paths)
    if not submissions:
        print(f"no submissions (.ipynb or .py) found under {', '.join(map(str, request.paths))}", file=sys.stderr)
        return EXIT_USAGE
    if "gradescope" in request.outputs and len(submissions) != 1:
        print("--gradescope writes one submission's results.json: give exactly one submission", file=sys.stderr)
        return EXIT_USAGE
    isolation = sandbox.detect(request.settings)
    if request.settings.limits.require_sandbox and not isolation.sandboxed:
        print(f"vae-assignment grade: --require-sandbox: bubblewrap cannot be used here ({isolation.reason}); "
              "nothing was graded", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = ResultStore(request.db)
    except StoreError as error:
        print(f"vae-assignment grade: --db: {error}", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    try:
        with store, _sigterm_as_ctrl_c():
            batch = grade_batch(submissions, jobs=max(1, request.jobs), settings=request.settings, store=store,
                                regrade=request.regrade, scheduler=request.scheduler,
                                visible_checks=request.visible_checks)
    except Interrupted as stop:
        print(f"interrupted: {stop.kept} of {stop.total} graded and kept in {request.db}; "
              "run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    elapsed = time.perf_counter() - started
    if batch.failures:
        for student, why in batch.failures.items():
            print(f"vae-assignment grade: the grader failed on {student}: {why}", file=sys.stderr)
        print(f"vae-assignment grade: nothing written; the {len(batch.records)} graded are kept in {request.db}: "
              "run the same command again to grade the rest", file=sys.stderr)
        return EXIT_GRADER_FAILED
    records, timings = batch.records, list(batch.timings.values())
    for writer in outputs.WRITERS:
        if writer.option in request.outputs:
            writer.write(request.outputs[writer.option], records, batch.timings)
    print(outputs.summary_table(records))
    print(f"isolation: {sandbox.describe(isolation)}")
    where = f"on the Dask cluster at {request.scheduler}" if request.scheduler else f"with {request.jobs} job(s)"
    ignored = f" ({store.ignored} unusable stored result(s) ignored)" if store.ignored else ""
    print(f"graded {len(timings)} submission(s) in {elapsed:.1f} s {where}, reused {batch.reused} from {request.db}"
          f"{ignored}; per submission {outputs.timing_summary(timings)}")
    if request.report:
        _write_report(request, submissions, records)
    return EXIT_OK


def _write_report(request: GradeRequest, submissions: list[Submission], records: list[dict]) -> None:
    """The class report, with the pairs of unusually similar submissions, from the grades JSON."""
    from autograder import outputs, similarity
    from autograder.report import build_report

    grades_json = request.outputs.get("json") or request.report / "grades.json"
    if "json" not in request.outputs:
        outputs.write_json(grades_json, records)
    similar = similarity.compare_submissions(submissions)
    similarity.write_json(similar, request.report)
    print(f"class report: {build_report(grades_json, request.report, similarity.html_section(similar))}")
