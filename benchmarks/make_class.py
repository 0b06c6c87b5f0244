"""A class of N notebook submissions in nbgrader's layout, for the benchmark.

The notebooks are the release notebook with its solution cells filled in, as a student hands
it in (unexecuted): the reference, the correct variants and the realistic mistakes of
autograder/catalogue.py, drawn with a seeded generator, plus a few hostile notebooks (a function
that never returns, one that kills or crashes the process, one that prints megabytes).

The hostile notebooks sit in the second half of the class: nbgrader autograde, which the
benchmark runs on the first notebooks only, would wait its cell timeout (300 s per cell, see
assignment/release.py) on a hang, so its subset holds none of them, which only flatters
nbgrader.

    python -m benchmarks.make_class --n 20 --out /tmp/class   # /tmp/class/course/submitted/...
"""
from __future__ import annotations

import argparse
import random
import shutil
import textwrap
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from assignment.contract import PROBLEMS
from assignment.notebook import ASSIGNMENT, SOURCE_NOTEBOOK_NAME
from assignment.release import build_release
from autograder.catalogue import CORRECT, MISTAKES, Variant, top_level_spans
from autograder.handed_in import cell_by_id, reference_notebook

REFERENCE = "reference"
# Shares of a class: the reference as handed out in solutions, the correct rewrites, the
# catalogued mistakes (each of the last two groups split evenly among its variants).
SHARES = {"reference": 0.3, "correct": 0.2, "mistake": 0.5}



def _code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


HOSTILE: tuple[Variant, ...] = (
    Variant("hostile_hang", "gaussian_log_density", "a function that never returns", {
        "gaussian_log_density": _code("""
            def gaussian_log_density(z, mu, logvar):
                while True:
                    pass
        """),
    }),
    Variant("hostile_crash", "elbo", "os._exit in elbo, a segmentation fault in iwae_bound", {
        "elbo": _code("""
            def elbo(x, logits, mu, logvar, beta=1.0):
                import os
                os._exit(3)
        """),
        "iwae_bound": _code("""
            def iwae_bound(x, logits, z, mu, logvar):
                import ctypes
                return ctypes.string_at(0)
        """),
    }),
    Variant("hostile_print", None, "a correct KL that prints 10 MB on every call", {
        "gaussian_kl": _code("""
            def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
                for step in range(10_000):
                    print(f"debug {step}: " + "kl " * 330)
                logvar_p = torch.as_tensor(logvar_p)
                kl = 0.5 * (logvar_p - logvar_q
                            + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)
                return kl.sum(dim=-1)
        """),
    }),
)


def patched_notebook(reference: NotebookNode, variant: Variant) -> NotebookNode:
    """The reference notebook with the variant's definitions in their solution cells.

    "VAE.encode" replaces one method inside the VAE cell; the variant's extra code (helpers,
    prints, a self-check that calls the solutions) goes at the end of the last solution cell,
    as build_source appends it to the module: the functions look their helpers up when called.
    """
    nb = nbformat.from_dict(reference)
    for name, source in variant.replaces.items():
        cell = cell_by_id(nb, name.split(".")[0])
        if "." not in name:
            cell.source = source.rstrip("\n")
            continue
        start, end, indent = top_level_spans(cell.source)[name]
        lines = cell.source.split("\n")
        lines[start - 1:end] = textwrap.indent(source.rstrip("\n"), " " * indent).split("\n")
        cell.source = "\n".join(lines)
    if variant.extra:
        last = cell_by_id(nb, PROBLEMS[-1])
        last.source = last.source.rstrip("\n") + "\n\n\n" + variant.extra.rstrip("\n")
    return nb


def composition(n: int, hostile: int, seed: int) -> list[str]:
    """Variant name of each of the n students, in class order: a seeded draw of the reference,
    correct variants and mistakes, with the hostile ones spread over the second half."""
    room = n - n // 2
    if not 0 <= hostile <= room:
        raise ValueError(f"{hostile} hostile notebook(s) do not fit in the second half of a class of {n} "
                         f"(at most {room})")
    names = [REFERENCE] + [v.name for v in CORRECT] + [v.name for v in MISTAKES]
    weights = ([SHARES["reference"]] + [SHARES["correct"] / len(CORRECT)] * len(CORRECT)
               + [SHARES["mistake"] / len(MISTAKES)] * len(MISTAKES))
    drawn = random.Random(seed).choices(names, weights, k=n - hostile)
    for i in range(hostile):
        drawn.insert(n // 2 + i * room // hostile, HOSTILE[i % len(HOSTILE)].name)
    return drawn


def student_id(index: int) -> str:
    return f"student{index:04d}"


def write_class(course: Path, n: int, *, hostile: int = 3, seed: int = 0) -> dict[str, str]:
    """Write course/submitted/<student>/vae/vae.ipynb for n students; student -> variant name.
    `course` is a course directory from build_release (its release notebook is filled in)."""
    release_nb = nbformat.read(course / "release" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME, as_version=4)
    reference = reference_notebook(release_nb)
    variants = {v.name: v for v in (*CORRECT, *MISTAKES, *HOSTILE)}
    names = composition(n, hostile, seed)
    notebooks = {name: reference if name == REFERENCE else patched_notebook(reference, variants[name])
                 for name in set(names)}
    students = {}
    for index, name in enumerate(names):
        student = student_id(index)
        # No two notebooks alike, as in a real class: a grader must not get to grade one
        # notebook for many students.
        nb = nbformat.from_dict(notebooks[name])
        first = cell_by_id(nb, PROBLEMS[0])
        first.source = f"# {student}'s solutions\n" + first.source
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / SOURCE_NOTEBOOK_NAME)
        students[student] = name
    return students


def new_course(release_dir: Path, course: Path) -> Path:
    """A fresh copy of the released course directory (its own gradebook) at `course`;
    the release is built into `release_dir` the first time."""
    if not (release_dir / "course").is_dir():
        build_release(release_dir)
    if course.exists():
        shutil.rmtree(course)
    shutil.copytree(release_dir / "course", course)
    return course


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.make_class", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, required=True, help="number of students")
    parser.add_argument("--hostile", type=int, default=3, help="hostile notebooks among them (default: 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder: OUT/release (the build) and OUT/course")
    args = parser.parse_args(argv)
    try:
        course = new_course(args.out / "release", args.out / "course")
        students = write_class(course, args.n, hostile=args.hostile, seed=args.seed)
    except ValueError as error:
        parser.error(str(error))
    print(f"{len(students)} notebooks in {course / 'submitted'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
