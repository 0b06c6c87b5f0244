"""Calibration of the model check's early pass: held-out ELBO at every checkpoint, per model.

    python -m benchmarks.calibrate_model_check --seeds 0,1 --out benchmarks/results/calibration.md
    python -m benchmarks.calibrate_model_check --only dropout,batchnorm   # some models only

Each model trains in a real sandboxed worker, as the grader trains it (known-good sampler and
loss, the model check's budget, estimates from snapshots of the weights in other workers),
but never stops early: the held-out ELBO is estimated every `check_every` steps and the last
estimate, after the whole budget, is the grader's score.
The table shows, for each model and training seed, those values, the step at which the early
pass would have stopped it, and whether the two rules (score after the whole budget, or pass
at the first checkpoint within the margin) give the same points.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from assignment.contract import ELBO_FLOOR_MARGIN, ELBO_MARGIN
from autograder import memorisers, model_check
from autograder.catalogue import CORRECT, MISTAKES, build_source
from autograder.grading import prepare_process
from autograder.isolation import sandbox
from autograder.settings import Settings
from autograder.worker_client import Student


@dataclass(frozen=True)
class Model:
    name: str
    kind: str  # "legitimate", "mistake" or "memorising"
    source: str
    kwargs: dict


def models() -> list[Model]:
    reference = (Path(__file__).resolve().parent.parent / "solutions" / "vae.py").read_text()
    found = [Model("reference (2 x 256 MLP)", "legitimate", reference, model_check.MODEL_KWARGS),
             Model("reference built with hidden_dim=64", "legitimate", reference,
                   {**model_check.MODEL_KWARGS, "hidden_dim": 64})]
    found += [Model(v.name, "legitimate", build_source(v), model_check.MODEL_KWARGS)
              for v in CORRECT if "VAE" in v.replaces]
    found += [Model(v.name, "mistake", build_source(v), model_check.MODEL_KWARGS)
              for v in MISTAKES if v.problem == "VAE" and v.name.startswith(("vae_blind", "vae_softplus",
                                                                            "vae_decoder", "vae_forward"))]
    found += [Model(name.lower().replace("_", " "), "memorising", getattr(memorisers, name), model_check.MODEL_KWARGS)
              for name in ("REMEMBERS_WHAT_IT_ENCODES", "READS_THE_HELDOUT_SPLIT", "STASHES_IN_A_BUFFER",
                           "HIDES_IN_LOW_BITS", "TAKES_THE_HELDOUT_FROM_A_FRAME")]
    return found


def points(elbo: float, target: float) -> str:
    if model_check.implausibly_good(elbo, target):
        return "flagged"
    return "full" if elbo >= target - ELBO_MARGIN else "partial" if elbo >= target - ELBO_FLOOR_MARGIN else "none"


def train(model: Model, seed: int, settings: Settings, isolation: sandbox.Isolation) -> dict:
    """Checkpoint estimates and the grader's score after the whole budget, for one seed."""
    student = Student([("vae.py", model.source)], settings.limits, isolation, settings.worker_start)
    try:
        handle = student.request("model_new", rng_seed=1 + seed, kwargs=model.kwargs)["handle"]
        started = time.perf_counter()
        reply = model_check.train_and_estimate(student, handle, None, replace(model_check.BUDGET, seed=seed),
                                               model.kwargs)
        seconds = time.perf_counter() - started
    finally:
        student.close()
    values = {step: float("nan") if value is None else value for step, value in reply["checkpoints"]}
    final = values.pop(model_check.BUDGET.steps)
    return {"checkpoints": values, "final": final, "seconds": seconds}


def row(model: Model, seed: int, run: dict, target: float, stop_at: float) -> tuple[str, bool]:
    budget, every = model_check.BUDGET.steps, model_check.BUDGET.check_every
    stopped = next((step for step, value in sorted(run["checkpoints"].items()) if value >= stop_at), None)
    whole = points(run["final"], target)
    early = "full" if stopped is not None else whole
    cells = [f"{run['checkpoints'].get(step, float('nan')):.2f}" for step in range(every, budget, every)]
    same = whole == early
    return (f"| {model.name} | {model.kind} | {seed} | " + " | ".join(cells) + f" | {run['final']:.2f} | "
            f"{whole} | {stopped or budget} | {early} | {'yes' if same else '**no**'} | {run['seconds']:.1f} |"), same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibrate_model_check", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1", help="training seeds, comma-separated (default: 0,1)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--only", help="comma-separated parts of model names: train only the models they name")
    args = parser.parse_args(argv)
    settings = Settings.from_environment()
    prepare_process(settings)
    isolation = sandbox.detect(settings)
    seeds = [int(s) for s in args.seeds.split(",")]
    target = model_check.reference_heldout_elbo()
    stop_at = model_check.pass_mark()
    every, budget = model_check.BUDGET.check_every, model_check.BUDGET.steps
    steps = list(range(every, budget, every))
    lines = [f"Reference model after {budget} steps: {target:.2f} nats; full points from {target - ELBO_MARGIN:.2f}, "
             f"partial from {target - ELBO_FLOOR_MARGIN:.2f}; training stops at a checkpoint whose estimate is at "
             f"least {stop_at:.2f}.", "",
             "| model | kind | seed | " + " | ".join(f"step {s}" for s in steps) + f" | step {budget} (grader) | "
             "points after the whole budget | stops at step | points with the early pass | same | training s |",
             "|---" * (len(steps) + 9) + "|"]
    all_same = True
    chosen = [m for m in models() if not args.only or any(part in m.name for part in args.only.split(","))]
    for model in chosen:
        for seed in seeds:
            line, same = row(model, seed, train(model, seed, settings, isolation), target, stop_at)
            all_same &= same
            lines.append(line)
            print(line, flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print("\n" + text)
    print("the early pass gives the same points for every model and seed" if all_same
          else "the early pass CHANGES the points of some model: see the rows marked no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
