"""Time `vae-assignment grade` and `nbgrader autograde` on the same class of notebooks.

    python -m benchmarks.run --n 40 --jobs 2 --out benchmarks/results/
    python -m benchmarks.run --sweep 100,200,400 --nbgrader-n 0 --out benchmarks/results/
    python -m benchmarks.run --n 200 --dask-local-workers 2 --nbgrader-n 0 --out benchmarks/results/

For each class size N: a fresh course directory with N unexecuted notebooks (make_class.py);
`vae-assignment grade` on all of them with the local pool (and through Dask when asked); then,
on the first class only, `nbgrader autograde` with the course's config (graded ahead on the
same number of jobs) on its first --nbgrader-n notebooks (default: all of them). Writes
OUT/results.md and OUT/results.json and prints the table; the classes, the grades and every
command's log stay under OUT/work/. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path

from assignment.notebook import ASSIGNMENT
from assignment.release import COURSE_ID
from benchmarks import report
from benchmarks.dask_cluster import ClusterError, local_cluster, require_distributed
from benchmarks.make_class import REFERENCE, new_course, write_class
from benchmarks.measure import Measured, psutil, run_measured
from autograder.catalogue import CORRECT, MISTAKES

HOSTILE_DEFAULT = 3
CORRECT_NAMES = {variant.name for variant in CORRECT}
MISTAKE_NAMES = {variant.name for variant in MISTAKES}


def class_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected class sizes like 100,200,400, got {text!r}")
    return sizes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="students in the class (default: 200)")
    parser.add_argument("--sweep", type=class_sizes, metavar="N,N,...",
                        help="grade classes of these sizes instead of --n, and fit the time against N")
    parser.add_argument("--jobs", type=int, default=2, help="the local pool's processes (default: 2)")
    parser.add_argument("--nbgrader-n", type=int,
                        help="run nbgrader autograde on the first notebooks of the (first) class: how many "
                             "(default: all of them; 0 skips it)")
    parser.add_argument("--nbgrader-execute", action="store_true",
                        help="nbgrader autograde also runs each notebook's cells in the sandbox for the feedback "
                             "(SandboxedAutograde.execute_notebook; about 10 s of CPU per notebook, and a "
                             "hostile notebook that hangs holds a slot for its cell timeout)")
    parser.add_argument("--hostile", type=int,
                        help=f"hostile notebooks in each class (hang, crash, print; default: {HOSTILE_DEFAULT}, "
                             "fewer where the second half of the class is smaller)")
    parser.add_argument("--seed", type=int, default=0, help="of the class's mix (default: 0)")
    dask = parser.add_mutually_exclusive_group()
    dask.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                      help="also grade through this running Dask scheduler (vae-assignment grade --scheduler)")
    dask.add_argument("--dask-local-workers", type=int, metavar="W",
                      help="also grade through a Dask cluster started here for the run: a scheduler and W "
                           "one-thread workers on loopback")
    parser.add_argument("--skip-local", action="store_true", help="grade through Dask only, not the local pool")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="results.md, results.json and work/ (default: benchmarks/results)")
    return parser


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    sizes = args.sweep or [args.n]
    smallest = min(sizes)
    if args.nbgrader_n is None:
        args.nbgrader_n = sizes[0]
    if args.jobs < 1 or smallest < 1 or (args.hostile or 0) < 0 or args.nbgrader_n < 0:
        parser.error("--n, --sweep and --jobs must be positive; --hostile and --nbgrader-n at least 0")
    if args.hostile is not None and args.hostile > smallest - smallest // 2:
        parser.error(f"--hostile {args.hostile}: the hostile notebooks go in the second half of the class, "
                     f"which holds {smallest - smallest // 2} in a class of {smallest}")
    if args.nbgrader_n > sizes[0]:
        parser.error(f"--nbgrader-n {args.nbgrader_n}: at most the (first) class, {sizes[0]}")
    if args.skip_local and not (args.scheduler or args.dask_local_workers):
        parser.error("--skip-local leaves nothing to grade without --scheduler or --dask-local-workers")
    if args.dask_local_workers is not None and args.dask_local_workers < 1:
        parser.error("--dask-local-workers must be at least 1")


def _env() -> dict[str, str]:
    """One torch thread per process, as graders run; this environment's bin/ first on PATH
    (nbgrader's gradebook calls `alembic`, Dask's CLI is `dask`)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _summary(measured: Measured, grader: str, n: int, cores: int) -> dict:
    return {
        "grader": grader, "n": n, "cores": cores,
        "wall_s": measured.wall_seconds,
        "seconds_per_submission": measured.wall_seconds / n,
        "per_minute": 60 * n / measured.wall_seconds,
        "peak_rss_mib": measured.peak_rss_mib, "peak_processes": measured.peak_processes,
        "split": measured.split, "command": measured.command, "log": str(measured.log),
    }


def _failed(measured: Measured, what: str) -> SystemExit:
    return SystemExit(f"{what} failed (exit {measured.returncode}); last lines of {measured.log}:\n{measured.tail()}")


def score_check(grades: Path, students: dict[str, str]) -> dict:
    """How the class was scored against what each notebook is: the reference and the correct
    rewrites must get 100, the catalogued mistakes less."""
    scores = {record["id"]: record["score"] for record in json.loads(grades.read_text())["submissions"]}
    correct = [s for s, variant in students.items() if variant == REFERENCE or variant in CORRECT_NAMES]
    mistakes = [s for s, variant in students.items() if variant in MISTAKE_NAMES]
    return {"correct": len(correct), "correct_full_marks": sum(scores[s] == 100 for s in correct),
            "mistakes": len(mistakes), "mistakes_below_full": sum(scores[s] < 100 for s in mistakes),
            "not_as_expected": sorted(s for s in correct if scores[s] != 100)
                               + sorted(s for s in mistakes if scores[s] == 100)}


def grade_class(submitted: Path, work: Path, n: int, grader: str, extra: list[str], cores: int,
                students: dict[str, str], also_watch: list[int] = ()) -> dict:
    """`vae-assignment grade` on the class, in a fresh folder of its own (so a grades database
    left by an earlier run there is never reused), measured, its scores checked."""
    folder = _fresh(work / re.sub(r"[^a-z0-9]+", "-", grader.lower()).strip("-"))
    command = [sys.executable, "-m", "autograder.cli", "grade", str(submitted),
               "--json", str(folder / "grades.json"), *extra]
    print(f"  {grader}: grading {n} notebooks ...", flush=True)
    measured = run_measured(command, cwd=folder, env=_env(), log=folder / "grade.log", also_watch=also_watch)
    if measured.returncode != 0:
        raise _failed(measured, f"vae-assignment grade ({grader})")
    summary = _summary(measured, grader, n, cores)
    summary["grades"] = str(folder / "grades.json")
    summary["scores"] = score_check(folder / "grades.json", students)
    print(f"  {grader}: {summary['wall_s']:.1f} s, {summary['seconds_per_submission']:.2f} s / submission", flush=True)
    return summary


def autograde_subset(course: Path, students: list[str], subset: int, jobs: int, execute: bool) -> dict:
    """`nbgrader autograde` (as an instructor runs it, with the course's config) on the first
    `subset` students, graded ahead on `jobs` processes; with `execute`, each notebook's cells
    also run in the sandbox. Each notebook's seconds come from nbgrader's log (the progress lines)."""
    excluded = ",".join(students[subset:])
    command = [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force",
               f"--SandboxedAutograde.jobs={jobs}", f"--SandboxedAutograde.execute_notebook={execute}",
               *([f"--CourseDirectory.student_id_exclude={excluded}"] if excluded else [])]
    print(f"  nbgrader autograde: {subset} notebooks ...", flush=True)
    measured = run_measured(command, cwd=course, env=_env(), log=course.parent / "nbgrader-autograde.log")
    if measured.returncode != 0:
        raise _failed(measured, "nbgrader autograde")
    graded = sorted(p.name for p in (course / "autograded").iterdir())
    if graded != sorted(students[:subset]):
        raise SystemExit(f"nbgrader autograde graded {len(graded)} notebooks, not the {subset} asked for "
                         f"(log: {measured.log})")
    grader = "nbgrader autograde" + (", notebooks run" if execute else "")
    summary = _summary(measured, grader, subset, min(jobs, len(os.sched_getaffinity(0))))
    summary["per_notebook_s"] = per_notebook_seconds(Path(measured.log).read_text(errors="replace"))
    print(f"  nbgrader autograde: {summary['wall_s']:.1f} s, {summary['seconds_per_submission']:.2f} s / submission",
          flush=True)
    return summary


def same_scores(course: Path, grades: Path) -> dict:
    """Whether the gradebook's per-problem scores of each notebook nbgrader graded equal the
    grader's JSON's (a list of the students whose do not)."""
    from nbgrader.api import Gradebook

    records = {record["id"]: record for record in json.loads(grades.read_text())["submissions"]}
    graded = sorted(p.name for p in (course / "autograded").iterdir())
    different = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        for student in graded:
            problems = records[student]["problems"]
            if any(gradebook.find_grade(f"check_{name}", ASSIGNMENT, ASSIGNMENT, student).score != problem["score"]
                   for name, problem in problems.items()):
                different.append(student)
    return {"notebooks": len(graded), "different": different}


PROGRESS_LINE = re.compile(r"\[(\d+)/(\d+)\] (\S+): .*; ([0-9.]+) s, ")


def per_notebook_seconds(log: str) -> dict[str, float]:
    """Student -> seconds since the notebook before, from SandboxedAutograde's progress lines."""
    return {match[3]: float(match[4]) for match in PROGRESS_LINE.finditer(log)}


def _scheduler_threads(address: str) -> int:
    require_distributed()
    from distributed import Client

    with Client(address, timeout=60) as client:
        return sum(client.nthreads().values())


def _machine() -> dict:
    return {"cpus": len(os.sched_getaffinity(0)), "memory_gib": psutil.virtual_memory().total / 2**30,
            "platform": platform.platform(terse=True), "python": platform.python_version(),
            "torch": importlib.metadata.version("torch")}


def _isolation(runs: list[dict]) -> str | None:
    for run in runs:
        found = re.findall(r"^isolation: (.*)$", Path(run["log"]).read_text(errors="replace"), re.M)
        if found:
            return found[-1]
    return None


def benchmark(args: argparse.Namespace) -> dict:
    """Every class and run; OUT/results.json and results.md are rewritten after each run, so
    a failure late in a sweep keeps what was measured before it."""
    sizes = args.sweep or [args.n]
    out = args.out.resolve()
    release = _fresh(out / "work") / "release"  # built afresh: the notebook may have changed
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine": _machine(), "isolation": None, "sizes": sizes,
               "runs": [], "nbgrader": None, "fits": {}, "classes": {}}
    cpus = results["machine"]["cpus"]

    def done(run: dict) -> None:
        if run["grader"].startswith("nbgrader autograde"):
            results["nbgrader"] = run
        else:
            first = next((r for r in results["runs"] if r["n"] == run["n"]), None)
            if first is not None:  # another grader of the same class: the same JSON, byte for byte?
                run["same_grades_as"] = {"grader": first["grader"], "identical":
                                         Path(first["grades"]).read_bytes() == Path(run["grades"]).read_bytes()}
            results["runs"].append(run)
        runs = results["runs"]
        results["isolation"] = _isolation(runs)
        results["fits"] = {g: report.linear_fit([(r["n"], r["wall_s"]) for r in runs if r["grader"] == g])
                           for g in sorted({r["grader"] for r in runs})}
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "results.md").write_text(report.markdown(results))

    for index, n in enumerate(sizes):
        work = out / "work" / f"n{n}"
        print(f"class of {n}: writing the notebooks into {work / 'course'} ...", flush=True)
        course = new_course(release, work / "course")
        hostile = min(HOSTILE_DEFAULT, n - n // 2) if args.hostile is None else args.hostile
        students = write_class(course, n, hostile=hostile, seed=args.seed)
        results["classes"][str(n)] = {"hostile": hostile, "students": students,
                                      "composition": dict(collections.Counter(students.values()))}
        submitted = course / "submitted"
        if not args.skip_local:
            done(grade_class(submitted, work, n, f"local pool, {args.jobs} jobs", ["--jobs", str(args.jobs)],
                             min(args.jobs, cpus), students))
        if args.scheduler:
            done(grade_class(submitted, work, n, f"Dask cluster at {args.scheduler}", ["--scheduler", args.scheduler],
                             _scheduler_threads(args.scheduler), students))
        if args.dask_local_workers:
            workers = args.dask_local_workers
            with local_cluster(workers, work / "dask", _env()) as cluster:
                done(grade_class(submitted, work, n, f"Dask, {workers} local workers",
                                 ["--scheduler", cluster.address], workers, students, also_watch=cluster.pids))
        if index == 0 and args.nbgrader_n:
            nbgrader = autograde_subset(course, sorted(students), args.nbgrader_n, args.jobs, args.nbgrader_execute)
            if results["runs"]:  # the same per-problem scores as the first grader's JSON?
                nbgrader["same_scores_as"] = same_scores(course, Path(results["runs"][0]["grades"]))
            done(nbgrader)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    if args.dask_local_workers or args.scheduler:
        try:
            require_distributed()
        except ClusterError as error:
            parser.error(str(error))
    try:
        benchmark(args)
    except ClusterError as error:
        print(f"benchmark: {error}", file=sys.stderr)
        return 1
    print("\n" + (args.out / "results.md").read_text())
    print(f"written: {args.out / 'results.md'}, {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
