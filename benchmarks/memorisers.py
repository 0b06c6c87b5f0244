"""Grade the cheating models of autograder/memorisers.py as a class, with the reference: the
VAE's points, the held-out ELBO, how the model was trained and whether it was flagged.

    python -m benchmarks.memorisers [--jobs 2] [--only buffer,bits]

Used for issue 22's before / after table (benchmarks/README.md, "Cheating the model check");
run it from a checkout of each version. Needs nothing from tests/.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from autograder import memorisers
from autograder.batch import grade_all
from autograder.collect import find_submissions
from autograder.isolation import sandbox
from autograder.settings import Settings

MODELS = {
    "reference": memorisers.REFERENCE,
    "remembers_what_it_encodes": memorisers.REMEMBERS_WHAT_IT_ENCODES,
    "reads_the_heldout_split": memorisers.READS_THE_HELDOUT_SPLIT,
    **{name.lower(): getattr(memorisers, name) for name in (
        "STASHES_IN_A_BUFFER", "HIDES_IN_LOW_BITS", "CHEATS_ONLY_IN_THE_SANDBOX", "TAKES_THE_HELDOUT_FROM_A_FRAME",
        "REPLACES_TRAIN_VAE", "TRAINS_TEN_TIMES_PER_STEP", "PRETRAINS_AT_IMPORT") if hasattr(memorisers, name)},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memorisers", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", help="comma-separated parts of model names")
    args = parser.parse_args(argv)
    settings = Settings.from_environment()
    chosen = {name: source for name, source in MODELS.items()
              if not args.only or name == "reference" or any(part in name for part in args.only.split(","))}
    with tempfile.TemporaryDirectory(prefix="vae-memorisers-") as folder:
        for name, source in chosen.items():
            (Path(folder) / f"{name}.py").write_text(source)
        started = time.perf_counter()
        records, timings = grade_all(find_submissions([Path(folder)]), jobs=args.jobs, settings=settings,
                                     progress=False)
        elapsed = time.perf_counter() - started
    print(f"isolation: {sandbox.describe(sandbox.detect(settings))}; {len(records)} graded in {elapsed:.0f} s")
    print("| model | total | VAE | held-out ELBO | reference | model record | seconds |")
    print("|---|---|---|---|---|---|---|")
    for record, timing in zip(records, timings):
        model = record.get("model") or {}
        rest = {k: v for k, v in model.items() if k not in ("heldout_elbo", "reference_heldout_elbo")}
        print(f"| {record['id']} | {record['score']:g} | {record['problems']['VAE']['score']:g} | "
              f"{model.get('heldout_elbo')} | {model.get('reference_heldout_elbo')} | {json.dumps(rest)} | "
              f"{timing.get('total', 0):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
