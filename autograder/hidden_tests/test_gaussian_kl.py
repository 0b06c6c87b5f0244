"""Hidden tests of `gaussian_kl`."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.feedback import failure, show_inputs
from autograder.hidden_tests.strategies import batch_shapes, gaussians, tensors
from autograder.hidden_tests.support import Case, check_dtype_follows, check_gradients, check_value, problem_of_test_file
from solutions import vae as reference

PROBLEM = problem_of_test_file(__file__)
NAMES = ("mu_q", "logvar_q", "mu_p", "logvar_p")

# The visible check's fixed cases (float64; batch sizes differ from the last dimension, so the
# summed axis cannot be confused with the batch axis): `python -m autograder.check_values`
# stores them in check_values.json with the reference's output and those of the catalogued mistakes.
VISIBLE_CASES = (
    Case("prior N(0, I) (the defaults)", {
        "mu_q": [[0.0, 0.3], [-0.27, -0.89], [-0.45, -0.99]],
        "logvar_q": [[0.06, 1.34], [-0.49, -0.62], [0.49, 0.36]],
    }),
    Case("tensor prior arguments", {
        "mu_q": [[0.11, -0.93, -0.03], [0.7, -1.34, -0.46]],
        "logvar_q": [[-1.9, -1.29, -1.84], [-0.24, -1.27, 0.27]],
        "mu_p": [[0.16, -0.19, -2.52], [-0.54, -0.05, 0.11]],
        "logvar_p": [[-1.53, -0.48, -0.98], [-0.81, 1.06, -0.81]],
    }),
    Case("Python float prior arguments", {
        "mu_q": [[-0.03, 0.88, -0.58, -0.11], [0.11, 0.06, -1.23, 0.08]],
        "logvar_q": [[0.64, 2.0, 0.76, 1.2], [0.07, 0.58, 0.19, 0.68]],
    }, {"mu_p": 0.5, "logvar_p": 0.7}),
)


def check(student, args, kwargs=None, *, checked):
    return check_value(student, PROBLEM, NAMES, args, kwargs, checked=checked, reference=reference.gaussian_kl)


@pytest.mark.points(4)
@given(q=gaussians())
def test_standard_normal_prior(student, q):
    """KL(q || N(0, I)) with the default prior matches the closed form."""
    check(student, q, checked="KL(q || N(0, I)) with the default prior arguments, summed over the last dimension")


@pytest.mark.points(4)
@given(data=st.data())
def test_general_prior(student, data):
    """KL(q || p) against a prior given by tensors mu_p, logvar_p."""
    shape = data.draw(batch_shapes())
    q, p = data.draw(gaussians(shape=shape)), data.draw(gaussians(shape=shape))
    check(student, (*q, *p), checked="KL(q || p) with tensor prior arguments mu_p, logvar_p")


@pytest.mark.points(2)
@given(q=gaussians(), mu_p=st.sampled_from([-1.5, 0.5, 2.0]), logvar_p=st.sampled_from([-1.0, 0.7]))
def test_float_prior_arguments(student, q, mu_p, logvar_p):
    """mu_p and logvar_p given as Python floats."""
    check(student, q, {"mu_p": mu_p, "logvar_p": logvar_p}, checked="KL(q || p) with Python floats as mu_p and logvar_p")


@pytest.mark.points(2)
@given(q=gaussians(dtype=torch.float64))
def test_float64(student, q):
    """float64 inputs give a float64 result at float64 precision."""
    check_dtype_follows(student, PROBLEM, q, torch.float64, NAMES)
    check(student, q, checked="KL(q || N(0, I)) computed in float64 (tolerance 1e-7)")


@pytest.mark.points(3)
@given(data=st.data())
def test_broadcasting(student, data):
    """Arguments of different shapes broadcast, whichever carries the batch axes; the result drops only the last dimension."""
    batch, z_dim = data.draw(st.integers(2, 4)), data.draw(st.integers(1, 3))
    shapes = [((3, batch, z_dim), (batch, z_dim), (z_dim,), (1, z_dim)),  # q carries the batch axes
              ((z_dim,), (3, batch, z_dim), (batch, z_dim), (z_dim,)),  # logvar_q and the prior do
              ((batch, z_dim), (z_dim,), (3, batch, z_dim), (3, 1, z_dim))]  # the prior does
    cases = [(shape, tuple(data.draw(tensors(s)) for s in shape)) for shape in shapes]  # every draw before a call
    for shape, args in cases:
        check(student, args, checked=f"broadcasting shapes {', '.join(map(str, shape))} to a (3, {batch}) result")


@pytest.mark.points(3)
@given(data=st.data())
def test_gradients(student, data):
    """Gradients with respect to mu_q, logvar_q, mu_p and logvar_p are right."""
    shape = data.draw(batch_shapes(min_dims=2, max_dims=2))
    q, p = data.draw(gaussians(shape=shape, dtype=torch.float64)), data.draw(gaussians(shape=shape, dtype=torch.float64))
    check_gradients(student, PROBLEM, NAMES, (*q, *p), (0, 1, 2, 3), reference=reference.gaussian_kl)


@pytest.mark.points(1)
@given(q=gaussians())
def test_zero_for_identical_distributions(student, q):
    """KL(q || q) = 0, and KL(q || p) > 0 for a p that differs from q."""
    got = student.call(PROBLEM, *q, *q)["out"]
    zero = torch.zeros(q[0].shape[:-1])
    if type(got) is not torch.Tensor or got.shape != zero.shape or not torch.allclose(got.double(), zero.double(), atol=1e-4):
        raise failure("KL(q || q) is zero", show_inputs(NAMES, (*q, *q)), zero, got)
    other = (q[0] + 1.0, q[1] - 0.5)  # every coordinate differs, so the KL is positive
    got = student.call(PROBLEM, *q, *other)["out"]
    if type(got) is not torch.Tensor or got.shape != zero.shape or not (got > 0).all():
        raise failure("KL(q || p) is positive for p different from q", show_inputs(NAMES, (*q, *other)),
                      "positive values", got, "the KL must be computed from its arguments, not a constant.")


@pytest.mark.points(1)
def test_wide_range_of_log_variances(student):
    """Right for log-variances far from 0 (-35 to 25, still finite in float32): no clamping."""
    logvar_q = torch.tensor([[-35.0, 25.0, 0.5], [12.0, -20.0, -6.0]])
    logvar_p = torch.tensor([[-30.0, 20.0, -6.0], [25.0, -35.0, 8.0]])
    mu_q, mu_p = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -0.5]]), torch.tensor([[0.0, 1.0, -1.0], [0.5, 3.0, 0.0]])
    check(student, (mu_q, logvar_q, mu_p, logvar_p), checked="KL(q || p) with log-variances between -35 and 25")
