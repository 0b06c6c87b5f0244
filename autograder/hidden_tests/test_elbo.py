"""Hidden tests of `elbo`.

Error carried forward: an `elbo` that correctly combines the student's own
`bernoulli_log_likelihood` and `gaussian_kl` keeps its points even when those are wrong.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.hidden_tests.strategies import binary_images, gaussians, tensors
from autograder.hidden_tests.support import Case, check_composite, check_own_gradients, expect_dtype, problem_of_test_file, versions
from solutions import vae as reference

PROBLEM = problem_of_test_file(__file__)
NAMES = ("x", "logits", "mu", "logvar", "beta")

# The visible check's fixed cases (float64; batch sizes differ from the last dimension, so the
# summed axis cannot be confused with the batch axis): `python -m autograder.check_values`
# stores them in check_values.json with the reference's output and those of the catalogued mistakes.
_VISIBLE_ARGS = {
    "x": [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]],
    "logits": [[-2.58, 0.69, -3.38, -4.07], [-0.61, -1.8, 0.33, 4.49], [-1.66, -1.25, 0.41, 0.99]],
    "mu": [[-0.18, -0.21], [0.7, 0.52], [-1.03, -0.08]],
    "logvar": [[0.04, -1.05], [0.26, -0.86], [0.97, 0.19]],
}
VISIBLE_CASES = (
    Case("beta = 1", _VISIBLE_ARGS),
    Case("beta = 2", _VISIBLE_ARGS, {"beta": 2.0}),
)
# The parts the visible check carries forward (the student's own wrong part replaced by its
# expected value): (problem, the case's arguments it is called with).
VISIBLE_PARTS = (("bernoulli_log_likelihood", ("x", "logits")), ("gaussian_kl", ("mu", "logvar")))


@st.composite
def elbo_inputs(draw, *, samples: int = 0, dtype=torch.float32):
    """(x, logits, mu, logvar); logits get a leading sample axis when samples > 0."""
    batch, x_dim, z_dim = draw(st.integers(1, 5)), draw(st.integers(2, 6)), draw(st.integers(1, 3))
    logits_shape = (samples, batch, x_dim) if samples else (batch, x_dim)
    x = draw(binary_images((batch, x_dim), dtype=dtype))
    logits = draw(tensors(logits_shape, low=-6, high=6, dtype=dtype))
    return (x, logits, *draw(gaussians(shape=(batch, z_dim), dtype=dtype)))


def parts(student, args):
    """Every version (reference, student's own) of the likelihood and of the KL."""
    x, logits, mu, logvar = args
    return (versions(student, "bernoulli_log_likelihood", (x, logits), reference=reference.bernoulli_log_likelihood),
            versions(student, "gaussian_kl", (mu, logvar), reference=reference.gaussian_kl))


def check(student, args, beta, *, checked):
    """The elbo, or None when an error came only from the student's own KL or likelihood."""
    return check_composite(student, PROBLEM, NAMES, args, {"beta": beta}, checked=checked,
                           reference=reference.elbo, combine=lambda likelihood, kl: likelihood - beta * kl,
                           parts=lambda: parts(student, args))


@pytest.mark.points(4)
@given(args=elbo_inputs())
def test_values(student, args):
    """log p(x | z) - KL(q || N(0, I)) per example, with beta = 1."""
    check(student, args, 1.0, checked="elbo(x, logits, mu, logvar) per example (beta = 1)")


@pytest.mark.points(2)
@given(args=elbo_inputs(), beta=st.sampled_from([0.0, 0.5, 4.0]))
def test_beta(student, args, beta):
    """beta weighs the KL term only."""
    check(student, args, beta, checked=f"elbo with beta = {beta}: log p(x | z) - beta * KL")


@pytest.mark.points(1)
@given(args=elbo_inputs(samples=3))
def test_no_reduction(student, args):
    """No reduction over the batch: logits with a sample axis give a (K, batch) result."""
    check(student, args, 1.0, checked="the result keeps every batch axis (no mean or sum over examples)")


@pytest.mark.points(1)
@given(args=elbo_inputs(dtype=torch.float64))
def test_float64(student, args):
    """float64 inputs give a float64 result at float64 precision."""
    got = check(student, args, 1.0, checked="elbo in float64 (tolerance 1e-7)")
    if got is not None:  # None: an error carried forward from the student's own parts
        expect_dtype(got, PROBLEM, args, torch.float64, NAMES)


@pytest.mark.points(2)
def test_gradients(student):
    """Gradients reach x, logits, mu and logvar and are the derivatives of the elbo computed (no detached term)."""
    # Grey levels, so that x stays within [0, 1] when it is moved a little to take a difference.
    x = torch.tensor([[0.8, 0.2, 0.7, 0.8], [0.3, 0.2, 0.6, 0.2], [0.8, 0.7, 0.3, 0.2]], dtype=torch.float64)
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.1], [1.5, 0.3, -0.7, -2.0], [0.0, 1.0, -1.0, 3.0]], dtype=torch.float64)
    mu = torch.tensor([[0.5, -1.0], [1.2, 0.4], [-0.3, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.2, -0.8], [1.0, -1.5], [0.5, 0.7]], dtype=torch.float64)
    args = (x, logits, mu, logvar)
    if check(student, args, 1.0, checked="elbo(x, logits, mu, logvar) in float64") is not None:  # None: carried forward
        check_own_gradients(student, PROBLEM, NAMES, args, {"beta": 1.0})
