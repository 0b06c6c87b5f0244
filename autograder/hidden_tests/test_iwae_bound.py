"""Hidden tests of `iwae_bound`.

Error carried forward: the bound is accepted when it is right with the reference's
log-densities or with the student's own `gaussian_log_density` / `bernoulli_log_likelihood`.
"""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.hidden_tests.strategies import binary_images, gaussians, tensors
from autograder.hidden_tests.support import Case, check_composite, check_own_gradients, expect_dtype, problem_of_test_file, versions
from solutions import vae as reference

PROBLEM = problem_of_test_file(__file__)
NAMES = ("x", "logits", "z", "mu", "logvar")

# The visible check's fixed cases (float64; batch sizes differ from the last dimension, so the
# summed axis cannot be confused with the batch axis): `python -m autograder.check_values`
# stores them in check_values.json with the reference's output and those of the catalogued mistakes.
_VISIBLE_X = [[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]]
_VISIBLE_LOGITS = [  # (K=3, batch=2, x_dim=4)
    [[-0.05, 0.14, -1.5, 0.91], [-1.08, -0.29, -2.22, -2.43]],
    [[2.67, -1.01, 0.58, -0.07], [-0.88, -1.02, 1.26, -0.6]],
    [[-0.3, 0.04, 2.35, 1.36], [0.77, -1.13, -2.76, 1.9]],
]
_VISIBLE_Z = [  # (K=3, batch=2, z_dim=3)
    [[-0.69, -0.33, -0.56], [0.01, -0.38, -0.3]],
    [[-1.38, -0.81, 1.65], [-0.67, -1.05, 0.34]],
    [[1.41, -1.45, -0.21], [-0.63, -1.76, 0.73]],
]
_VISIBLE_MU = [[0.97, -0.14, 0.54], [0.78, 0.83, 0.92]]
_VISIBLE_LOGVAR = [[-0.46, 1.51, -1.25], [0.86, 0.49, 0.87]]
VISIBLE_CASES = (
    Case("K = 3", {"x": _VISIBLE_X, "logits": _VISIBLE_LOGITS, "z": _VISIBLE_Z,
                   "mu": _VISIBLE_MU, "logvar": _VISIBLE_LOGVAR}),
    Case("K = 1 (the single-sample ELBO)", {
        "x": _VISIBLE_X, "logits": _VISIBLE_LOGITS[:1], "z": _VISIBLE_Z[:1],
        "mu": _VISIBLE_MU, "logvar": _VISIBLE_LOGVAR}),
    Case("log-weights around -1e4 (must stay finite)", {
        "x": [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]],
        "logits": [[[-10000.0, 10000.0, 1.5], [5000.0, -5000.0, 2.0]],
                   [[-10000.5, 9999.0, 1.0], [5000.0, -5001.0, 0.5]]],
        "z": _VISIBLE_Z[:2], "mu": _VISIBLE_MU, "logvar": _VISIBLE_LOGVAR}),
)
# The parts the visible check carries forward (the student's own wrong part replaced by its
# expected value): (problem, the case's arguments it is called with); "zeros" is zeros shaped
# like z, the prior N(0, I).
VISIBLE_PARTS = (("bernoulli_log_likelihood", ("x", "logits")),
                 ("gaussian_log_density", ("z", "zeros", "zeros")),
                 ("gaussian_log_density", ("z", "mu", "logvar")))


@st.composite
def iwae_inputs(draw, *, samples=None, dtype=torch.float32):
    samples = samples or draw(st.integers(2, 6))
    batch, x_dim, z_dim = draw(st.integers(1, 4)), draw(st.integers(2, 6)), draw(st.integers(1, 3))
    x = draw(binary_images((batch, x_dim), dtype=dtype))
    logits = draw(tensors((samples, batch, x_dim), low=-6, high=6, dtype=dtype))
    z = draw(tensors((samples, batch, z_dim), dtype=dtype))
    return (x, logits, z, *draw(gaussians(shape=(batch, z_dim), dtype=dtype, logvar_range=2.0)))


def parts(student, args):
    """Every version (reference, student's own) of log p(x | z), log p(z) and log q(z | x)."""
    x, logits, z, mu, logvar = args
    zeros = torch.zeros_like(z)
    return (versions(student, "bernoulli_log_likelihood", (x, logits), reference=reference.bernoulli_log_likelihood),
            versions(student, "gaussian_log_density", (z, zeros, zeros), reference=reference.gaussian_log_density),
            versions(student, "gaussian_log_density", (z, mu, logvar), reference=reference.gaussian_log_density))


def check(student, args, *, checked):
    samples = args[2].shape[0]

    def bound(likelihood, prior, posterior):  # Burda et al. eq. (8) from given log-densities
        log_weights = (likelihood + prior - posterior).double()
        return torch.logsumexp(log_weights, dim=0).to(args[0].dtype) - math.log(samples)

    return check_composite(student, PROBLEM, NAMES, args, {}, checked=checked, reference=reference.iwae_bound,
                           combine=bound, parts=lambda: parts(student, args))


@pytest.mark.points(5)
@given(args=iwae_inputs())
def test_values(student, args):
    """log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x) for K between 2 and 6."""
    check(student, args, checked="the K-sample importance-weighted bound")


@pytest.mark.points(1)
@given(args=iwae_inputs(samples=1))
def test_single_sample(student, args):
    """With K = 1 the bound is the single-sample ELBO with the Monte Carlo KL."""
    check(student, args, checked="the bound with K = 1: log p(x | z) + log p(z) - log q(z | x)")


@pytest.mark.points(2)
def test_stable_for_very_negative_log_weights(student):
    """Finite when every log-weight is around -1e4 (no underflow of exp to zero)."""
    x = torch.ones(2, 4)
    logits = torch.full((3, 2, 4), -2500.0) + torch.arange(3.0).reshape(3, 1, 1)
    z, mu, logvar = torch.zeros(3, 2, 2), torch.zeros(2, 2), torch.zeros(2, 2)
    check(student, (x, logits, z, mu, logvar), checked="stability with log-weights near -1e4 (use logsumexp)")


@pytest.mark.points(1)
@given(args=iwae_inputs(dtype=torch.float64))
def test_float64(student, args):
    """float64 inputs give a float64 result of shape (batch,)."""
    got = check(student, args, checked="the bound in float64")
    if got is not None:  # None: an error carried forward from the student's own parts
        expect_dtype(got, PROBLEM, args, torch.float64, NAMES)


@pytest.mark.points(1)
def test_gradients(student):
    """Gradients reach x, logits, z, mu and logvar and are the derivatives of the bound computed (no detached term)."""
    # x holds grey levels, so that it stays within [0, 1] when moved a little to take a difference.
    args = tuple(torch.tensor(a, dtype=torch.float64) for a in (
        [[0.8, 0.2, 0.7]], [[[0.5, -1.0, 2.0]], [[1.0, 0.0, -1.0]]], [[[0.3, -0.2]], [[1.0, 0.5]]], [[0.1, 0.2]], [[0.0, -0.5]]))
    if check(student, args, checked="the bound in float64") is not None:  # None: carried forward
        check_own_gradients(student, PROBLEM, NAMES, args)
