"""Where `vae-assignment similarity` should flag a pair, and how long a class of N takes.

Scores every pair of the class of benchmarks/similarity_class.py (the reference and the correct
variants of autograder/catalogue.py, each handed in alone, and disguised copies of four of them)
and prints the highest score of two independent solutions against the lowest of a copy
against its original: FLAG_SCORE lies between. With `--n N`, also times the comparison of the
benchmark class of N notebooks (benchmarks/make_class.py), reading included; with
`--distinct`, each notebook made to differ from all others by a line, so that no comparison
is shared (the worst case: most of that class are copies).

    python -m benchmarks.calibrate_similarity --n 200 [--distinct] --out /tmp/similarity
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import nbformat

from assignment.contract import PROBLEMS
from assignment.notebook import ASSIGNMENT, SOURCE_NOTEBOOK_NAME
from autograder import similarity
from autograder.collect import find_submissions
from autograder.handed_in import cell_by_id
from benchmarks.make_class import new_course, write_class as write_benchmark_class
from benchmarks.similarity_class import independent, write_class


def calibrate(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    codes = [similarity.own_code(s) for s in find_submissions([write_class(folder)])]
    pairs = similarity.compare(codes, threshold=0.0).flagged  # every pair that shares anything
    apart = [p for p in pairs if independent(p.students)]
    copies = [p for p in pairs if p.students[0] == f"copy_of_{p.students[1]}"]
    print(f"independent solutions: {len(codes) - len(copies)}, their pairs: {len(apart)}, "
          f"median score {statistics.median(p.score for p in apart):.2f}")
    for p in apart[:5]:
        print(f"  {p.score:.2f}  {p.students[0]} / {p.students[1]}")
    print("disguised copies against their originals:")
    for p in copies:
        print(f"  {p.score:.2f}  {p.students[0]} (shares {p.shares[0]:.2f} / {p.shares[1]:.2f})")
    print(f"highest independent {apart[0].score:.2f} < FLAG_SCORE {similarity.FLAG_SCORE} "
          f"< lowest copy {min(p.score for p in copies):.2f}")


def _make_distinct(submitted: Path) -> None:
    """A different number in each notebook: no two normalised codes alike, so every pair is compared."""
    for index, path in enumerate(sorted(submitted.glob(f"*/{ASSIGNMENT}/{SOURCE_NOTEBOOK_NAME}"))):
        nb = nbformat.read(path, as_version=4)
        cell = cell_by_id(nb, PROBLEMS[0])
        cell.source += f"\n\n\nstudent_number = {index * 7919}\n"
        nbformat.write(nb, path)


def time_class(n: int, out: Path, distinct: bool) -> None:
    course = new_course(out / "release", out / "course")
    write_benchmark_class(course, n)
    if distinct:
        _make_distinct(course / "submitted")
    started = time.perf_counter()
    result = similarity.compare_submissions(find_submissions([course / "submitted"]))
    compared = time.perf_counter() - started
    similarity.write_outputs(result, out / "similarity")
    print(f"benchmark class of {n}: {len(result.scores)} pairs compared in {compared:.1f} s (reading included), "
          f"outputs written after {time.perf_counter() - started:.1f} s; {len(result.flagged)} pairs flagged")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibrate_similarity", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=0, help="also time a benchmark class of N notebooks (0: no)")
    parser.add_argument("--distinct", action="store_true",
                        help="make every notebook's normalised code differ (the worst case: no pair shared)")
    parser.add_argument("--out", type=Path, required=True, help="working folder")
    args = parser.parse_args(argv)
    calibrate(args.out / "calibration")
    if args.n:
        time_class(args.n, args.out, args.distinct)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
