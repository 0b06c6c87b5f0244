"""The model check: train a VAE on the digits for a fixed budget and score its held-out ELBO.

The student's model trains in the worker with known-good sampling and loss (error carried
forward); it sends back only the encoder's and decoder's outputs on the held-out set for
fixed noise, and the ELBO is computed here with the reference. The reference model is
trained under the same budget, once per grader version and machine (reference_cache.py).

A model that passes may pass early: every `check_every` steps the worker estimates the
held-out ELBO, and training ends once it is within ELBO_MARGIN of the reference's; the
model is then scored as it is at that step (the calibration is in benchmarks/README.md). A model that
never gets there trains the whole budget, so the partial points are judged at its end.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from assignment.contract import ELBO_MARGIN, ELBO_PLAUSIBLE_MARGIN
from assignment.public import vae_course
from autograder import reference_cache
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


# The worker's estimate must clear the pass mark by this much before training stops, so that
# float rounding between its estimate and the grader's value cannot fail a model that stopped.
STOP_SLACK = 0.05  # nats
BUDGET = TrainingBudget()
EVALUATION_DRAWS = vae_course.EVALUATION_DRAWS
MODEL_KWARGS = {"x_dim": 64, "z_dim": 2, "hidden_dim": 256}


def training_arguments() -> dict:
    """The budget, and the estimate at which the student's training may stop (see above)."""
    return {**asdict(BUDGET), "stop_at": reference_heldout_elbo() - ELBO_MARGIN + STOP_SLACK}


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
