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
