"""The `vae-assignment` command: release, grade, report, similarity, validate, demo, doctor, gradescope-bundle."""
from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

from autograder.isolation.limits import Limits
from autograder.outputs import WRITERS
from autograder.pipeline import EXIT_GRADER_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, GradeRequest, grade
from autograder.settings import Settings, SettingsError


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
    grade.add_argument("--visible-checks", action="store_true",
                       help="also run the notebook's visible checks and keep their results in the record "
                            "(Gradescope's results.json shows them)")
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

    doctor = commands.add_parser("doctor", help="check this machine and user first: isolation, worker start, "
                                                "who can read the hidden tests, torch")
    doctor.add_argument("--course", type=Path, metavar="DIR",
                        help="also check this nbgrader course folder (default: the current folder, if it is one)")

    bundle = commands.add_parser("gradescope-bundle", help="write the Gradescope autograder zip (setup.sh, run_autograder)")
    bundle.add_argument("--out", type=Path, default=Path("autograder.zip"), help="the zip to write (default: ./autograder.zip)")
    return parser


def _grade_request(args: argparse.Namespace) -> GradeRequest:
    limits = Limits(call_seconds=args.call_timeout, submission_seconds=args.submission_timeout,
                    memory_bytes=args.memory_mb * 2**20, require_sandbox=args.require_sandbox)
    settings = Settings.from_environment(limits=limits)
    files = {writer.option: getattr(args, writer.option) for writer in WRITERS if getattr(args, writer.option)}
    return GradeRequest(paths=args.paths, outputs=files, report=args.report, jobs=args.jobs, settings=settings,
                        db=args.db, regrade=args.regrade, scheduler=args.scheduler,
                        visible_checks=args.visible_checks)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from autograder.collect import UsageError

    try:
        if args.command == "release":
            from assignment.release import main_release
            return main_release(args.out)
        if args.command == "grade":
            return grade(_grade_request(args))
        if args.command == "report":
            from autograder.report import main_report
            return main_report(args.grades, args.out)
        if args.command == "similarity":
            from autograder.similarity import main_similarity
            return main_similarity(args.paths, args.out)
        if args.command == "validate":
            from autograder.validate import run_validation
            return run_validation(Settings.from_environment(), jobs=args.jobs)
        if args.command == "doctor":
            from autograder.doctor import run_doctor
            return run_doctor(Settings.from_environment(), args.course)
        if args.command == "gradescope-bundle":
            from autograder.gradescope_bundle import main_bundle
            return main_bundle(args.out)
        from autograder.demo import run_demo
        return run_demo(args.out, Settings.from_environment())
    except (UsageError, SettingsError) as error:
        print(f"vae-assignment {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"vae-assignment {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the grader's own failure: short message, detail in a log
        log = Path(tempfile.gettempdir()) / "vae-assignment-error.log"
        log.write_text(traceback.format_exc())
        print(f"vae-assignment {args.command} failed: {type(error).__name__}: {error}\n(full traceback in {log})", file=sys.stderr)
        return EXIT_GRADER_FAILED


if __name__ == "__main__":
    sys.exit(main())
