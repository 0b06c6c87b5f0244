"""Hidden tests of `gaussian_log_density`."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.hidden_tests.strategies import batch_shapes, gaussians, tensors
from autograder.hidden_tests.support import Case, check_dtype_follows, check_gradients, check_value, problem_of_test_file
from solutions import vae as reference

PROBLEM = problem_of_test_file(__file__)
NAMES = ("z", "mu", "logvar")

# The visible check's fixed cases (float64; batch sizes differ from the last dimension, so the
# summed axis cannot be confused with the batch axis): `python -m autograder.check_values`
# stores them in check_values.json with the reference's output and those of the catalogued mistakes.
VISIBLE_CASES = (
    Case("one z per example", {
        "z": [[0.09, -0.59], [-0.12, -2.0], [-1.13, 0.36]],
        "mu": [[-2.13, 0.85], [-1.75, 0.76], [-0.85, 0.78]],
        "logvar": [[0.13, -1.54], [1.25, 1.44], [-0.07, -0.27]],
    }),
    Case("z with a leading sample axis (K=2)", {
        "z": [[[-0.16, -0.98], [1.1, -0.54], [-0.05, -0.79]],
              [[-0.63, -1.28], [1.26, -0.15], [0.97, 0.01]]],
        "mu": [[-2.13, 0.85], [-1.75, 0.76], [-0.85, 0.78]],
        "logvar": [[0.13, -1.54], [1.25, 1.44], [-0.07, -0.27]],
    }),
)


def check(student, args, *, checked):
    return check_value(student, PROBLEM, NAMES, args, checked=checked, reference=reference.gaussian_log_density)


@pytest.mark.points(3)
@given(data=st.data())
def test_values(student, data):
    """log N(z; mu, diag(exp(logvar))) with its -log(2 pi) / 2 constant, summed over the last dimension."""
    shape = data.draw(batch_shapes())
    z, (mu, logvar) = data.draw(tensors(shape)), data.draw(gaussians(shape=shape))
    check(student, (z, mu, logvar), checked="log N(z; mu, diag(exp(logvar))), summed over the last dimension")


@pytest.mark.points(1)
@given(data=st.data())
def test_broadcasting_and_float64(student, data):
    """z of shape (K, batch, z_dim) against mu, logvar of shape (batch, z_dim), and the other way round, in float64."""
    batch, z_dim = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    z = data.draw(tensors((3, batch, z_dim), dtype=torch.float64))
    mu, logvar = data.draw(gaussians(shape=(batch, z_dim), dtype=torch.float64))
    mu_k, logvar_k = data.draw(gaussians(shape=(3, batch, z_dim), dtype=torch.float64, logvar_range=20.0))
    check_dtype_follows(student, PROBLEM, (z, mu, logvar), torch.float64, NAMES)
    check(student, (z, mu, logvar), checked=f"z of shape {(3, batch, z_dim)} against mu, logvar of shape {(batch, z_dim)} in float64")
    check(student, (z[0], mu_k, logvar_k),
          checked=f"z of shape {(batch, z_dim)} against mu, logvar of shape {(3, batch, z_dim)} (log-variances up to +-20) in float64")


@pytest.mark.points(1)
def test_gradients(student):
    """Gradients with respect to z, mu and logvar are right."""
    z = torch.tensor([[0.3, -1.0], [2.0, 0.5], [0.0, 0.0]], dtype=torch.float64)
    mu = torch.tensor([[0.0, 1.0], [1.5, -0.5], [0.2, 0.1]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0], [1.0, 0.5], [-2.0, 2.0]], dtype=torch.float64)
    check_gradients(student, PROBLEM, NAMES, (z, mu, logvar), (0, 1, 2), reference=reference.gaussian_log_density)
