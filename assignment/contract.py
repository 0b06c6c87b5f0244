"""The graded problems of the assignment contract (ASSIGNMENT_SPEC.md): the one registry.

`CONTRACT` is the only place the problems are listed. Their order is the notebook's order,
and everything else is derived from it: the notebook's check cells, points table and setup
import, the hidden tests each problem's file holds (`autograder/hidden_tests/test_<name>.py`,
whose points must add up to the problem's), the visible checks and the values they read
(`assignment/public/check_values.json`, generated), the score table and every output.
"""
from __future__ import annotations

from dataclasses import dataclass

FUNCTION, SAMPLER, MODEL = "function", "sampler", "model"


@dataclass(frozen=True)
class Problem:
    name: str  # the def or class students write, as in solutions/vae.py
    points: int
    label: str  # its column in the plain-text score table: short, and distinct from the others
    # FUNCTION: deterministic; its visible check compares fixed cases (kept in its hidden-test
    # file) and its mistakes are recognised by their output. SAMPLER and MODEL: random or a
    # class, checked by statistics and structure in checks of their own.
    kind: str = FUNCTION
    trains_model: bool = False  # the notebook's training of the student's model uses it

    @property
    def check_function(self) -> str:
        """The visible check of the problem, as the notebook's check cell calls it."""
        return f"check_{self.name.lower()}"


CONTRACT: tuple[Problem, ...] = (
    Problem("gaussian_kl", 20, "kl", trains_model=True),
    Problem("reparameterize", 15, "reparam", kind=SAMPLER, trains_model=True),
    Problem("bernoulli_log_likelihood", 10, "bern_ll", trains_model=True),
    Problem("elbo", 10, "elbo", trains_model=True),
    Problem("gaussian_log_density", 5, "gauss_ld"),
    Problem("iwae_bound", 10, "iwae"),
    Problem("VAE", 30, "VAE", kind=MODEL),
)

PROBLEMS: tuple[str, ...] = tuple(problem.name for problem in CONTRACT)
PROBLEM_POINTS: dict[str, int] = {problem.name: problem.points for problem in CONTRACT}
PROBLEM_LABELS: dict[str, str] = {problem.name: problem.label for problem in CONTRACT}
TOTAL_POINTS: int = sum(PROBLEM_POINTS.values())


def problem(name: str) -> Problem:
    """The contract's entry of `name`; ValueError naming the problems when there is none."""
    for entry in CONTRACT:
        if entry.name == name:
            return entry
    raise ValueError(f"{name!r} is not a contract problem ({', '.join(PROBLEMS)})")


def _well_formed() -> None:
    kinds = (FUNCTION, SAMPLER, MODEL)
    for entry in CONTRACT:
        if not entry.name.isidentifier() or entry.kind not in kinds or entry.points <= 0:
            raise ValueError(f"contract entry {entry}: a Python name, points > 0 and a kind in {kinds}")
    for what in ("name", "label", "check_function"):
        values = [getattr(entry, what) for entry in CONTRACT]
        if len(set(values)) != len(values):
            raise ValueError(f"two contract problems share a {what}: {values}")


_well_formed()

# The model check (autograder/model_check.py): how far below the reference model's held-out
# ELBO a trained model may be, in nats, for the full points and for the partial points.
# Legitimate architectures are within 1.3 nats; a blind encoder is 4.6 below.
ELBO_MARGIN: float = 2.5
ELBO_FLOOR_MARGIN: float = 6.0
# A held-out ELBO more than this above the reference's is flagged for the instructor's review:
# the best legitimate model is 1.0 nats above it, a model that reads the held-out images 18.4
# (benchmarks/README.md, "Calibrating the model check").
ELBO_PLAUSIBLE_MARGIN: float = 3.0
