"""The model check: train the student's VAE on the digits for a fixed budget and score its
held-out ELBO against the reference's.

The worker that trains the student's model never sees a held-out image: it holds the
submission, trains on the training split with the known-good sampler and loss (error carried
forward), and the grader drives its training loop (bound in the worker before the submission
was loaded) in chunks of `check_every` steps, counting the steps itself. After each chunk the
grader takes a snapshot of the weights; a second worker builds the student's VAE from them
and encodes the held-out images (mu, logvar), and a fresh third one, which never sees an
image, decodes z = mu + exp(logvar / 2) * eps for the fixed noise. So the only path from a
held-out image to its reconstruction is z, which costs KL in the ELBO computed here with the
reference.

A model that passes may pass early: once the held-out ELBO at a checkpoint is within
ELBO_MARGIN of the reference's, training ends and the model is scored as it is there (the
estimate is the score: the calibration is in benchmarks/README.md). A model that never gets
there trains the whole budget, so the partial points are judged at its end.

Three signs of cheating are flagged for the instructor. Two withhold the held-out ELBO points
until a person looks, as no legitimate model comes near them: a held-out ELBO better than any
legitimate model reaches, and a model that is at the pass mark before the grader gave it a
step (`pretrained`: it trained while the submission loaded, or its weights were pasted in).
The third, a training that used far more CPU per step than the reference's in the same kind of
worker (threads and processes it started included), as a submission that trains more than the
steps it is given would, is recorded as `slow_training` and withholds nothing: its timing is
the machine's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from assignment.contract import ELBO_MARGIN, ELBO_PLAUSIBLE_MARGIN
from assignment.public import vae_course
from autograder import reference_cache
from autograder.isolation.limits import Limits
from autograder.isolation.sandbox import Isolation
from autograder.worker_client import Student, StudentError, WorkerFailure
from solutions import vae as reference


@dataclass(frozen=True)
class TrainingBudget:
    # 1000 steps: below about 700 a legitimate small model is hard to tell from a blind
    # encoder (ANCHORS.md, "Worker start and model-check budget").
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    check_every: int = 250


BUDGET = TrainingBudget()
EVALUATION_DRAWS = vae_course.EVALUATION_DRAWS
MODEL_KWARGS = {"x_dim": 64, "z_dim": 2, "hidden_dim": 256}
# CPU seconds per step over the reference's, in the same kind of worker, from which a training
# is flagged: the slowest correct model of the catalogue (a conv net) takes 2.3 times the
# reference's, a model that takes ten Adam steps per step 12 times (benchmarks/README.md,
# "Cheating the model check").
SLOW_TRAINING_RATIO = 5.0


def evaluation_noise(examples: int, z_dim: int) -> torch.Tensor:
    """Fixed eps of shape (draws, examples, z_dim): every model is scored on the same draws
    (the public vae_course's, so the notebook's estimate uses the very same noise)."""
    return vae_course.evaluation_noise(examples, z_dim)


def heldout_data() -> torch.Tensor:
    return vae_course.load_digits("heldout")[0]


def heldout_elbo(mu: torch.Tensor, logvar: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean reference ELBO (nats per image) over the evaluation draws and held-out images."""
    x = heldout_data()
    mu, logvar, logits = (t.detach().double() for t in (mu, logvar, logits))
    return float(reference.elbo(x.double(), logits, mu, logvar).mean())


def implausibly_good(elbo: float, reference_elbo: float) -> bool:
    """A held-out ELBO better than any legitimate model reaches in the budget (contract.py)."""
    return elbo > reference_elbo + ELBO_PLAUSIBLE_MARGIN


def pass_mark() -> float:
    """The held-out ELBO from which the model earns full points, and at which training may stop."""
    return reference_heldout_elbo() - ELBO_MARGIN


# ------------------------------------------------------------------------ the student's model
def trained(student: Student) -> tuple[int, dict]:
    """The student's VAE(**MODEL_KWARGS) trained and estimated as the grader scores it (once per
    worker: see Student.trained_model): its handle in the submission's worker, and the reply
    of `train_and_estimate`."""
    return student.trained_model(MODEL_KWARGS, lambda handle: train_and_estimate(student, handle, pass_mark()))


def train_and_estimate(student: Student, handle: int, stop_at: float | None, budget: TrainingBudget = BUDGET,
                       kwargs: dict | None = None) -> dict:
    """Train model `handle` (built with `kwargs`) in chunks of `budget.check_every` steps up to
    `budget.steps`, estimating the held-out ELBO before the first chunk and after each one from
    a snapshot of the weights in other workers; stop at the first estimate after a chunk of at
    least `stop_at` (None: never). The reply:
    mu, logvar and logits of the last estimate (logits None where mu and logvar do not fit the
    noise), steps, stopped_early, checkpoints [[step, held-out ELBO or None]], and
    cpu_seconds_per_step (None where it cannot be read).

    An estimate that fails at a checkpoint ends the estimating: training goes on to the whole
    budget, and the failure of the estimate there is the model's."""
    kwargs = MODEL_KWARGS if kwargs is None else kwargs
    x = heldout_data()
    eps = evaluation_noise(len(x), kwargs["z_dim"])
    student.begin_training(handle, budget.batch_size, budget.lr, budget.seed)
    cpu_before = student.worker_cpu_seconds()
    deadline = time.monotonic() + student.limits.train_seconds
    steps, checkpoints, estimating, estimate = 0, [], True, {}
    while True:  # a checkpoint at step 0 too: the model as built, before the grader's first step
        last = steps == budget.steps
        if estimating or last:
            try:
                estimate = estimated(student, kwargs, student.weights(handle), x, eps)
            except (StudentError, WorkerFailure):
                if last:
                    raise
                estimating = False  # what is wrong is said after the last step, as unchecked
                checkpoints.append([steps, None])
            else:
                value = score(estimate)
                checkpoints.append([steps, round(value, 4) if math.isfinite(value) else None])
                if stop_at is not None and 0 < steps < budget.steps and value >= stop_at:
                    break
        if last:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise WorkerFailure(f"training did not finish within {student.limits.train_seconds:g} s (time limit)")
        count = min(budget.check_every or budget.steps, budget.steps - steps)
        student.train_steps(count, left)
        steps += count
    cpu_after = student.worker_cpu_seconds()
    cpu = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / steps
    return {**estimate, "steps": steps, "stopped_early": steps < budget.steps, "checkpoints": checkpoints,
            "cpu_seconds_per_step": cpu}


def estimated(student: Student, kwargs: dict, weights: dict, x: torch.Tensor, eps: torch.Tensor) -> dict:
    """mu and logvar of the held-out images `x` by a model built from `weights` in the encoding
    worker, and logits decoded in a fresh worker for z = mu + exp(logvar / 2) * eps."""
    encoded = student.encoded_apart(kwargs, weights, x)
    mu, logvar = encoded if isinstance(encoded, list) and len(encoded) == 2 else (encoded, None)
    fits = all(type(t) is torch.Tensor and t.is_floating_point() and t.shape == eps.shape[1:] for t in (mu, logvar))
    if not fits:  # the hidden tests say what is wrong with the shapes
        return {"mu": mu, "logvar": logvar, "logits": None}
    z = (mu + torch.exp(0.5 * logvar) * eps).to(mu.dtype)
    return {"mu": mu, "logvar": logvar, "logits": student.decoded_in_fresh_worker(kwargs, weights, z)}


def score(estimate: dict) -> float:
    """The held-out ELBO of an estimate; nan where its outputs do not have the right shapes."""
    mu, logvar, logits = (estimate.get(name) for name in ("mu", "logvar", "logits"))
    if not all(type(t) is torch.Tensor for t in (mu, logvar, logits)) \
            or logits.shape != (EVALUATION_DRAWS, *mu.shape[:-1], heldout_data().shape[-1]):
        return math.nan
    return heldout_elbo(mu, logvar, logits)


def pretrained(reply: dict) -> bool:
    """Whether the model reached the pass mark as built, before the grader gave it a step: it
    brought its training along (trained while the submission loaded, or weights pasted in). An
    untrained VAE is near -44 nats; one whose decoder starts at the pixels' means, near -30."""
    (step, value), *_ = reply["checkpoints"] or [(None, None)]
    return step == 0 and value is not None and value >= pass_mark()


def how_trained(student: Student, reply: dict) -> dict:
    """What the record says of the training: the steps the grader gave, whether it stopped at a
    checkpoint, the estimate at each (step 0 included), `pretrained` when it was at the mark
    before any step, and `slow_training` when its CPU time per step was over
    SLOW_TRAINING_RATIO times the reference's."""
    facts = {"training_steps": reply["steps"], "stopped_early": reply["stopped_early"],
             "checkpoints": reply["checkpoints"]}
    if pretrained(reply):
        facts["pretrained"] = True
    per_step = reply.get("cpu_seconds_per_step")
    reference_per_step = reference_cpu_seconds_per_step(student.limits, student.isolation, student.worker_start) if per_step else None
    if reference_per_step and per_step > SLOW_TRAINING_RATIO * reference_per_step:
        facts["slow_training"] = True
    return facts


# ----------------------------------------------------------------------------- the reference
@lru_cache(maxsize=1)
def reference_heldout_elbo() -> float:
    """The reference VAE's held-out ELBO under the same budget and evaluation noise (trained
    once per grader version and machine, see reference_cache.py)."""
    return reference_cache.cached_number("reference_heldout_elbo", train_reference_and_score)


def train_reference_and_score() -> float:
    torch.manual_seed(0)
    model = reference.VAE(**MODEL_KWARGS)
    x_train = vae_course.load_digits("train")[0]
    vae_course.train_vae(model, lambda m, x: -reference.elbo(x, *m(x)).mean(), x_train, steps=BUDGET.steps,
                         batch_size=BUDGET.batch_size, lr=BUDGET.lr, seed=BUDGET.seed)
    x = heldout_data()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        logits = model.decode(mu + torch.exp(0.5 * logvar) * evaluation_noise(len(x), MODEL_KWARGS["z_dim"]))
    return heldout_elbo(mu, logvar, logits)


@lru_cache(maxsize=None)
def reference_cpu_seconds_per_step(limits: Limits, isolation: Isolation, worker_start: str) -> float | None:
    """The reference VAE's CPU seconds per training step over one chunk, in a worker started as
    the students' are. Measured once per grading process, not kept on disk: it is the machine's
    (a cache folder may be shared by several). None where it cannot be measured."""
    student = Student([("vae.py", Path(reference.__file__).read_text())], limits, isolation, worker_start)
    try:
        handle = student.new_model(**MODEL_KWARGS)
        student.begin_training(handle, BUDGET.batch_size, BUDGET.lr, BUDGET.seed)
        before = student.worker_cpu_seconds()
        student.train_steps(BUDGET.check_every, limits.train_seconds)
        student.weights(handle)
        after = student.worker_cpu_seconds()
    except (StudentError, WorkerFailure):
        return None
    finally:
        student.close()
    return None if before is None or after is None else (after - before) / BUDGET.check_every
