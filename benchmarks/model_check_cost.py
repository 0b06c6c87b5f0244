"""Seconds per submission, and how much of it the model check takes, on a few submissions.

    python -m benchmarks.model_check_cost [--repeat 2]

Grades, one at a time (jobs 1, so the numbers are not two submissions sharing a core), the
reference as a module and as a handed-in notebook, the correct VAEs that are slowest to
train (conv, batch norm, dropout) and two VAE mistakes (one never reaches the mark, so it
trains the whole budget), `--repeat` times, and prints each submission's total, worker-start
and model-training seconds (the grader's own split, outputs.timing_summary). Issue 22's
before / after numbers: run it from a checkout of each version on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from assignment.notebook import build_notebook
from autograder.batch import grade_all
from autograder.catalogue import ALL, build_source, reference_source
from autograder.collect import find_submissions
from autograder.handed_in import reference_notebook
from autograder.settings import Settings

VARIANTS = ("correct_vae_conv_square", "correct_vae_batchnorm", "correct_vae_dropout", "vae_blind_encoder",
            "vae_decoder_sigmoid")


def write_class(folder: Path) -> None:
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    (folder / "reference_module.py").write_text(reference_source())
    release, _ = ClearSolutions().preprocess(build_notebook(), {})
    release, _ = ClearHiddenTests().preprocess(release, {})
    (folder / "reference_notebook.ipynb").write_text(nbformat.writes(reference_notebook(release)))
    for variant in ALL:
        if variant.name in VARIANTS:
            (folder / f"{variant.name}.py").write_text(build_source(variant))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_check_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    settings = Settings.from_environment()
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="vae-model-check-cost-") as folder:
        write_class(Path(folder))
        submissions = find_submissions([Path(folder)])
        for _ in range(args.repeat):
            started = time.perf_counter()
            records, timings = grade_all(submissions, jobs=1, settings=settings, progress=False)
            print(f"class of {len(records)} graded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            for record, timing in zip(records, timings):
                rows.setdefault(record["id"], []).append({**timing, "vae": record["problems"]["VAE"]["score"],
                                                          "steps": (record.get("model") or {}).get("training_steps")})
    print("| submission | VAE points | steps | total s | worker start s | model training s |")
    print("|---|---|---|---|---|---|")
    for name, runs in sorted(rows.items()):
        median = {key: statistics.median(run.get(key, 0.0) for run in runs)
                  for key in ("total", "worker_start", "model_training")}
        print(f"| {name} | {runs[0]['vae']:g} | {runs[0]['steps']} | {median['total']:.2f} | "
              f"{median['worker_start']:.2f} | {median['model_training']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
