"""Hidden tests of `bernoulli_log_likelihood`."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.hidden_tests.strategies import batch_shapes, binary_images, tensors
from autograder.hidden_tests.support import Case, check_dtype_follows, check_gradients, check_value, problem_of_test_file
from solutions import vae as reference

PROBLEM = problem_of_test_file(__file__)
NAMES = ("x", "logits")

# The visible check's fixed cases (float64; batch sizes differ from the last dimension, so the
# summed axis cannot be confused with the batch axis): `python -m autograder.check_values`
# stores them in check_values.json with the reference's output and those of the catalogued mistakes.
VISIBLE_CASES = (
    Case("binary pixels", {
        "x": [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]],
        "logits": [[0.41, -0.93, 0.25, -2.37], [-1.16, -0.39, 1.8, 2.29], [-2.65, -1.59, 1.29, -3.98]],
    }),
    Case("grey levels; logits with a leading sample axis (K=4)", {
        "x": [[0.25, 1.0, 0.0], [0.5, 0.75, 1.0]],
        "logits": [[[-0.93, -0.19, 2.51], [1.38, -0.65, -0.74]],
                   [[-0.5, 3.05, -0.86], [-0.61, 0.71, -0.24]],
                   [[-0.39, -2.23, -0.02], [-0.89, 2.33, 1.31]],
                   [[-0.05, 1.34, -0.68], [2.1, -0.01, 1.17]]],
    }),
    Case("extreme logits (must stay finite)", {
        "x": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        "logits": [[-500.0, 500.0, 2.0], [-500.0, 500.0, -3.0]],
    }),
)


def check(student, args, *, checked):
    return check_value(student, PROBLEM, NAMES, args, checked=checked, reference=reference.bernoulli_log_likelihood)


@pytest.mark.points(4)
@given(data=st.data())
def test_binary_pixels(student, data):
    """log p(x | z) for binary x, summed over pixels."""
    shape = data.draw(batch_shapes())
    x, logits = data.draw(binary_images(shape)), data.draw(tensors(shape, low=-8, high=8))
    check(student, (x, logits), checked="log p(x | z) of binary pixels, summed over the last dimension")


@pytest.mark.points(1)
@given(data=st.data())
def test_pixel_values_between_zero_and_one(student, data):
    """x in [0, 1] that is not binary (e.g. grey levels) uses the same formula."""
    shape = data.draw(batch_shapes())
    x, logits = data.draw(tensors(shape, low=0, high=1)), data.draw(tensors(shape, low=-8, high=8))
    check(student, (x, logits), checked="log p(x | z) with x between 0 and 1")


@pytest.mark.points(2)
@given(data=st.data(), samples=st.integers(2, 4))
def test_broadcasting_over_samples(student, data, samples):
    """logits of shape (K, batch, x_dim) against x of shape (batch, x_dim) give (K, batch), and x of shape (K, batch, x_dim) against logits of shape (batch, x_dim) too."""
    batch, x_dim = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 6))
    x, logits = data.draw(binary_images((batch, x_dim))), data.draw(tensors((samples, batch, x_dim), low=-8, high=8))
    x_k, logits_b = data.draw(binary_images((samples, batch, x_dim))), data.draw(tensors((batch, x_dim), low=-8, high=8))
    check(student, (x, logits), checked=f"x of shape {(batch, x_dim)} with logits of shape {(samples, batch, x_dim)}")
    check(student, (x_k, logits_b), checked=f"x of shape {(samples, batch, x_dim)} with logits of shape {(batch, x_dim)}")


@pytest.mark.points(2)
def test_extreme_logits(student):
    """Finite and accurate for logits of +-500 and +-1e4 (a logit of -500 with x = 1 gives about -500)."""
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    logits = torch.tensor([[-500.0, 500.0, 30.0, -30.0], [-1e4, 1e4, -1e4, 1e4]])
    check(student, (x, logits), checked="stability at extreme logits (no -inf or nan)")


@pytest.mark.points(1)
def test_float64_and_gradient(student):
    """float64 in, float64 out; the gradients are x - sigmoid(logits) for the logits and the logits for x."""
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.5, 1.0]], dtype=torch.float64)
    logits = torch.tensor([[0.3, -2.0, 4.0], [1.0, 0.0, -3.0]], dtype=torch.float64)
    check_dtype_follows(student, PROBLEM, (x, logits), torch.float64, NAMES)
    check(student, (x, logits), checked="log p(x | z) in float64")
    check_gradients(student, PROBLEM, NAMES, (x, logits), (0, 1), reference=reference.bernoulli_log_likelihood)
