"""The `vae-assignment` command: release, grade, report, similarity, validate, demo, gradescope-bundle."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from autograder.isolation.limits import Limits

EXIT_OK, EXIT_GRADER_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vae-assignment", description="The VAE assignment: release, grade, validate.")
    commands = parser.add_subparsers(dest="command", required=True)

    release = commands.add_parser("release", help="build the student release with nbgrader")
    release.add_argument("--out", type=Path, default=Path("release"), help="output folder (default: ./release)")

    grade = commands.add_parser("grade", help="grade submissions (.ipynb / .py files or folders of them)")
    grade.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    grade.add_argument("--json", type=Path, help="write every record as JSON (format in README.md)")
    grade.add_argument("--csv", type=Path, help="write a gradebook: a row per student, a column per problem")
    grade.add_argument("--gradescope", type=Path, help="write Gradescope's results.json (one submission only)")
    grade.add_argument("--report", type=Path, metavar="DIR",
                       help="write the class report into DIR (with DIR/grades.json unless --json is given)")
    grade.add_argument("--jobs", type=int, default=2,
                       help="submissions graded in parallel on this machine (default: 2; not with --scheduler)")
    grade.add_argument("--call-timeout", type=float, default=Limits.call_seconds, help="seconds per call of student code")
    grade.add_argument("--submission-timeout", type=float, default=Limits.submission_seconds, help="seconds per submission")
    grade.add_argument("--memory-mb", type=int, default=Limits.memory_bytes // 2**20, help="address-space limit of a worker")
    grade.add_argument("--require-sandbox", action="store_true",
                       help="refuse to grade unless student code can run inside bubblewrap")
    grade.add_argument("--db", type=Path, default=Path("grades.sqlite"),
                       help="keep each result here as soon as it is graded; a rerun reuses them "
                            "(default: ./grades.sqlite)")
    grade.add_argument("--regrade", action="store_true", help="grade everything again, replacing the results in --db")
    grade.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="grade on the Dask cluster of this scheduler instead of local processes")

    report = commands.add_parser("report", help="the class report (report.html and plots) from a grades JSON")
    report.add_argument("grades", type=Path, metavar="GRADES.json", help="written by `grade --json`")
    report.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: ./report)")

    similarity = commands.add_parser("similarity", help="pairs of submissions whose own code is unusually alike")
    similarity.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="submissions or folders, as for grade")
    similarity.add_argument("--out", type=Path, default=Path("similarity"),
                            help="output folder: similarity.html and similarity.json (default: ./similarity)")

    validate = commands.add_parser("validate", help="check the grader against the reference, stubs and the mistake catalogue")
    validate.add_argument("--jobs", type=int, default=2)

    demo = commands.add_parser("demo", help="build the release, run the solution notebook, grade examples")
    demo.add_argument("--out", type=Path, default=Path("demo-out"))

    bundle = commands.add_parser("gradescope-bundle", help="write the Gradescope autograder zip (setup.sh, run_autograder)")
    bundle.add_argument("--out", type=Path, default=Path("autograder.zip"), help="the zip to write (default: ./autograder.zip)")
    return parser


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a batch system's time limit, `kill`) stops grading as Ctrl-C does: cleanly, resumable."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _grade(args: argparse.Namespace) -> int:
    from autograder import outputs
    from autograder.batch import Interrupted, grade_batch
    from autograder.collect import find_submissions
    from autograder.store import ResultStore, StoreError

    submissions = find_submissions(args.paths)
    if not submissions:
        print(f"no submissions (.ipynb or .py) found under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return EXIT_USAGE
    if args.gradescope and len(submissions) != 1:
        print("--gradescope writes one submission's results.json: give exactly one submission", file=sys.stderr)
        return EXIT_USAGE
    from autograder.isolation import sandbox
    from autograder.settings import Settings

    limits = Limits(call_seconds=args.call_timeout, submission_seconds=args.submission_timeout,
                    memory_bytes=args.memory_mb * 2**20, require_sandbox=args.require_sandbox)
    settings = Settings.from_environment(limits=limits)
    isolation = sandbox.detect(settings)
    if args.require_sandbox and not isolation.sandboxed:
        print(f"vae-assignment grade: --require-sandbox: bubblewrap cannot be used here ({isolation.reason}); "
              "nothing was graded", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = ResultStore(args.db)
    except StoreError as error:
        print(f"vae-assignment grade: --db: {error}", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    try:
        with store, _sigterm_as_ctrl_c():
            batch = grade_batch(submissions, jobs=max(1, args.jobs), settings=settings, store=store, regrade=args.regrade,
                                scheduler=args.scheduler, visible_checks=args.gradescope is not None)
    except Interrupted as stop:
        print(f"interrupted: {stop.kept} of {stop.total} graded and kept in {args.db}; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - started
    if batch.failures:
        for student, why in batch.failures.items():
            print(f"vae-assignment grade: the grader failed on {student}: {why}", file=sys.stderr)
        print(f"vae-assignment grade: nothing written; the {len(batch.records)} graded are kept in {args.db}: "
              "run the same command again to grade the rest", file=sys.stderr)
        return EXIT_GRADER_FAILED
    records, timings = batch.records, list(batch.timings.values())
    if args.json:
        outputs.write_json(args.json, records)
    if args.csv:
        outputs.write_csv(args.csv, records)
    if args.gradescope:
        from autograder.gradescope import write_gradescope

        write_gradescope(args.gradescope, records[0], batch.timings.get(records[0]["id"], {}).get("total", 0.0))
    print(outputs.summary_table(records))
    print(f"isolation: {sandbox.describe(isolation)}")
    where = f"on the Dask cluster at {args.scheduler}" if args.scheduler else f"with {args.jobs} job(s)"
    ignored = f" ({store.ignored} unusable stored result(s) ignored)" if store.ignored else ""
    print(f"graded {len(timings)} submission(s) in {elapsed:.1f} s {where}, reused {batch.reused} from {args.db}"
          f"{ignored}; per submission {outputs.timing_summary(timings)}")
    if args.report:
        from autograder import similarity
        from autograder.report import build_report

        grades_json = args.json or args.report / "grades.json"
        if not args.json:
            outputs.write_json(grades_json, records)
        similar = similarity.compare_submissions(submissions)
        similarity.write_json(similar, args.report)
        print(f"class report: {build_report(grades_json, args.report, similarity.html_section(similar))}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from autograder.collect import UsageError

    try:
        if args.command == "release":
            from assignment.release import main_release
            return main_release(args.out)
        if args.command == "grade":
            return _grade(args)
        if args.command == "report":
            from autograder.report import main_report
            return main_report(args.grades, args.out)
        if args.command == "similarity":
            from autograder.similarity import main_similarity
            return main_similarity(args.paths, args.out)
        if args.command == "validate":
            from autograder.validate import run_validation
            return run_validation(jobs=args.jobs)
        if args.command == "gradescope-bundle":
            from autograder.gradescope import main_bundle
            return main_bundle(args.out)
        from autograder.demo import run_demo
        return run_demo(args.out)
    except UsageError as error:
        print(f"vae-assignment {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"vae-assignment {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the grader's own failure: short message, detail in a log
        log = Path(tempfile.gettempdir()) / "vae-assignment-error.log"
        log.write_text(traceback.format_exc())
        print(f"vae-assignment {args.command} failed: {type(error).__name__}: {error}\n(full traceback in {log})", file=sys.stderr)
        return EXIT_GRADER_FAILED


if __name__ == "__main__":
    sys.exit(main())
