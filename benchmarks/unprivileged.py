"""Root against an unprivileged grader on the same class, in one run (run as root).

The package is built into a wheel and installed, not editable (benchmarks/installed.py): for
root with this environment's Python and with /usr/bin/python3, and for an unprivileged user
(made with useradd where missing) with /usr/bin/python3, the only Python they can run (so
root with /usr/bin/python3 is the like-for-like comparison). Each then
- starts 1 + W empty workers one after the other and reports the median start of the last W
  (the first also starts the template), as `vae-assignment doctor` does;
- grades the same class of N notebooks (benchmarks/make_class.py, no hostile ones) with
  `vae-assignment grade --jobs J`, after a warm-up grading that fills their cache of
  reference values, and reports seconds per submission and its split.
The graders take turns, `--rounds` times, so that a machine whose speed drifts slows them
alike; each one's figures are the median over its rounds. The unprivileged user also grades
once with VAE_WORKER_START=classic: what every unprivileged grader got before its workers
could be forked. The machine's load is recorded alongside.

    sudo python -m benchmarks.unprivileged --n 20 --out benchmarks/results/unprivileged
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import installed
from benchmarks.make_class import new_course, write_class
from benchmarks.measure import split_of

MEASURE_STARTS = """
import json, sys
from autograder.doctor import measure_worker_starts
from autograder.isolation import sandbox
from autograder.settings import Settings
settings = Settings.from_environment()
starts = measure_worker_starts(settings, sandbox.detect(settings), int(sys.argv[1]))
print(json.dumps({"path": starts.path, "first_s": starts.first_seconds, "median_s": starts.median_seconds,
                  "isolation": sandbox.describe(sandbox.detect(settings))}))
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.unprivileged", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="notebooks in the class (default: 20)")
    parser.add_argument("--jobs", type=int, default=2, help="grading processes (default: 2)")
    parser.add_argument("--workers", type=int, default=20, help="worker starts timed (default: 20)")
    parser.add_argument("--rounds", type=int, default=2, help="turns each grader takes (default: 2)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/unprivileged"))
    return parser


class Grader:
    """One way of running the installed grader: root's or the unprivileged user's."""

    def __init__(self, name: str, bin_folder: Path, work: Path, user=None, **environment: str):
        self.name, self.bin, self.work, self.user = name, bin_folder, work, user
        base = (installed.user_environment(user, bin_folder) if user else
                {**os.environ, "PATH": f"{bin_folder}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
        self.environment = {**base, **environment}
        work.mkdir(parents=True)
        if user:
            os.chown(work, user.pw_uid, user.pw_gid)

    def run(self, command: list[str]) -> subprocess.CompletedProcess:
        if self.user:
            return installed.run_as(self.user, command, cwd=self.work, environment=self.environment, timeout=3600)
        return subprocess.run(command, cwd=self.work, env=self.environment, capture_output=True, text=True,
                              timeout=3600)

    def worker_starts(self, count: int) -> dict:
        done = self.run([str(self.bin / "python"), "-c", MEASURE_STARTS, str(count)])
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: timing worker starts failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def grade(self, paths: list[Path], jobs: int, label: str) -> dict:
        command = [str(self.bin / "vae-assignment"), "grade", *map(str, paths), "--jobs", str(jobs),
                   "--json", str(self.work / f"{label}.json"), "--db", str(self.work / f"{label}.sqlite")]
        started = time.perf_counter()
        done = self.run(command)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        (self.work / f"{label}.log").write_text(done.stdout + done.stderr)
        return {"wall_s": wall, **split_of(done.stdout), "summary": done.stdout.strip().splitlines()[-1]}


def benchmark(args: argparse.Namespace) -> dict:
    if os.getuid() != 0:
        raise SystemExit("run it as root: it installs the grader for an unprivileged user and runs it as them")
    user = installed.unprivileged_user()
    base = installed.shared_temporary_folder("vae-bench-unprivileged-")
    try:
        wheel = installed.build_wheel(base / "wheel")
        root_bin = installed.make_environment(base / "root-venv", wheel)
        system_bin = installed.make_environment(base / "system-venv", wheel, installed.SYSTEM_PYTHON)
        course = new_course(base / "release", base / "course")
        students = write_class(course, args.n, hostile=0)
        subprocess.run(["chmod", "-R", "a+rX", str(base / "course")], check=True)
        submitted = course / "submitted"
        warm_up = [submitted / sorted(students)[0]]
        graders = [Grader(f"root, {Path(sys.executable).name} of this environment", root_bin, base / "root"),
                   Grader(f"root, {installed.SYSTEM_PYTHON}", system_bin, base / "root-system"),
                   Grader(f"{user.pw_name} (unprivileged), {installed.SYSTEM_PYTHON}", system_bin, base / "user",
                          user)]
        classic = Grader(f"{user.pw_name}, {installed.SYSTEM_PYTHON}, VAE_WORKER_START=classic", system_bin,
                         base / "user-classic", user, VAE_WORKER_START="classic")
        runs: dict[str, list[dict]] = {}
        for grader in [*graders, classic]:
            print(f"{grader.name}: worker starts, warm-up ...", flush=True)
            runs[grader.name] = [{"worker_starts": grader.worker_starts(args.workers)}]
            grader.grade(warm_up, 1, "warm-up")
        turns = [grader for _ in range(args.rounds) for grader in graders] + [classic]
        for turn, grader in enumerate(turns):
            load_before = os.getloadavg()[0]
            print(f"{grader.name}: grading {args.n} notebooks ...", flush=True)
            graded = grader.grade([submitted], args.jobs, f"class-{turn}")
            runs[grader.name].append({"grading": graded, "load": [load_before, os.getloadavg()[0]]})
            print(f"  {graded['summary']}", flush=True)
        return {"n": args.n, "jobs": args.jobs, "cpus": os.cpu_count(), "rounds": args.rounds, "runs": runs,
                "graders": {name: summary(done) for name, done in runs.items()}}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def summary(runs: list[dict]) -> dict:
    """One grader's worker starts, and the median over its rounds of each grading figure."""
    gradings = [run["grading"] for run in runs[1:]]
    return {"worker_starts": runs[0]["worker_starts"],
            "grading": {key: statistics.median(g[key] for g in gradings)
                        for key in ("total", "worker_start", "model_training", "tests")},
            "load": [min(run["load"][0] for run in runs[1:]), max(run["load"][1] for run in runs[1:])],
            "rounds": len(gradings)}


def table(results: dict) -> str:
    root = next(iter(results["graders"].values()))["grading"]["total"]
    lines = [f"| {results['n']} notebooks, --jobs {results['jobs']}, {results['cpus']} CPUs | isolation | worker "
             f"start: median of W after the first (first) | per submission, median of rounds (vs the first row) | "
             f"its worker start, training, tests | load (1 min) |", "|---|---|---|---|---|---|"]
    for name, run in results["graders"].items():
        starts, graded = run["worker_starts"], run["grading"]
        lines.append(f"| {name} | {starts['isolation'].split(';')[0]}) | {1000 * starts['median_s']:.0f} ms, "
                     f"{starts['path']} ({starts['first_s']:.1f} s) | {graded['total']:.2f} s "
                     f"({graded['total'] / root:.2f}x) | {1000 * graded['worker_start']:.0f} ms, "
                     f"{graded['model_training']:.2f} s, {graded['tests']:.2f} s | "
                     f"{run['load'][0]:.1f}-{run['load'][1]:.1f} ({run['rounds']} round(s)) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    results = benchmark(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
