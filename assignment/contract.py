"""The graded problems of the assignment contract (ASSIGNMENT_SPEC.md), in contract order.

The one place the problem names and their points are written down: the notebook builder,
the hidden tests and the score report all read this table.
"""

PROBLEM_POINTS: dict[str, int] = {
    "gaussian_kl": 20,
    "reparameterize": 15,
    "bernoulli_log_likelihood": 10,
    "elbo": 10,
    "gaussian_log_density": 5,
    "iwae_bound": 10,
    "VAE": 30,
}
PROBLEMS: tuple[str, ...] = tuple(PROBLEM_POINTS)
TOTAL_POINTS: int = sum(PROBLEM_POINTS.values())
# Column labels of the plain-text score table: short, and distinct (gaussian_kl and
# gaussian_log_density must not both read "gaussian").
PROBLEM_LABELS: dict[str, str] = {
    "gaussian_kl": "kl",
    "reparameterize": "reparam",
    "bernoulli_log_likelihood": "bern_ll",
    "elbo": "elbo",
    "gaussian_log_density": "gauss_ld",
    "iwae_bound": "iwae",
    "VAE": "VAE",
}

# The model check (autograder/model_check.py): how far below the reference model's held-out
# ELBO a trained model may be, in nats, for the full points and for the partial points.
# Legitimate architectures are within 1.3 nats; a blind encoder is 4.6 below.
ELBO_MARGIN: float = 2.5
ELBO_FLOOR_MARGIN: float = 6.0
# A held-out ELBO more than this above the reference's is flagged for the instructor's review:
# the best legitimate model is 1.0 nats above it, a model that reads the held-out images 18.4
# (benchmarks/README.md, "Calibrating the model check").
ELBO_PLAUSIBLE_MARGIN: float = 3.0
