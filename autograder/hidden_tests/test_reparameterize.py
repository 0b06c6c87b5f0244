"""Hidden tests of `reparameterize`.

A sampler may draw its noise in any way torch's global generator allows, so values are never
compared with a fixed tensor: the statistics tests use thresholds of six standard errors or
more, which a correct sampler fails with a probability far below one in a million, and the
gradient test uses the identity dz/dlogvar = (z - mu) / 2 that holds for every draw. Every
test feeds a mean and log-variance away from 0 and 0 and checks that each draw lies within 8
standard deviations of its mean, so a sampler that ignores its inputs earns nothing.
"""
import math

import pytest
import torch

from autograder.feedback import expect_tensor, failure, show, show_inputs
from autograder.hidden_tests.support import problem_of_test_file
from autograder.mistakes import mistakes_for

PROBLEM = problem_of_test_file(__file__)
NAMES = ("mu", "logvar")
HINTS = {m.code: m for m in mistakes_for(PROBLEM)}
DRAWS = 20_000


def draw_many(student, mu, logvar):
    """DRAWS samples for each coordinate of (mu, logvar): shape (DRAWS, *mu.shape)."""
    big_mu, big_logvar = mu.expand(DRAWS, *mu.shape).contiguous(), logvar.expand(DRAWS, *logvar.shape).contiguous()
    z = expect_tensor(student.call(PROBLEM, big_mu, big_logvar)["out"], PROBLEM, show_inputs(NAMES, (big_mu, big_logvar)))
    if z.shape != big_mu.shape:
        raise failure("the shape of reparameterize(mu, logvar)", show_inputs(NAMES, (big_mu, big_logvar)),
                      f"shape {tuple(big_mu.shape)}", z)
    return z.double()


def expect_near_mean(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> None:
    """Each draw within 8 standard deviations of its mean (a correct sampler strays further with
    probability 1e-15): z follows mu and logvar."""
    std = torch.exp(0.5 * logvar.double())
    if not ((z.double() - mu.double()).abs() <= 8 * std).all():
        raise failure("that each sample lies within 8 standard deviations exp(logvar / 2) of its mean mu",
                      show_inputs(NAMES, (mu, logvar)), f"values within mu +- 8 * {show(std)}", z,
                      "z must be mu + exp(logvar / 2) * eps: shifted by mu and scaled by the standard deviation.")


def sample(student, mu, logvar, **options) -> torch.Tensor:
    """One sample of the broadcast shape and the inputs' dtype, near its mean."""
    inputs = show_inputs(NAMES, (mu, logvar))
    z = expect_tensor(student.call(PROBLEM, mu, logvar, **options)["out"], PROBLEM, inputs)
    shape = torch.broadcast_shapes(mu.shape, logvar.shape)
    if z.shape != shape or z.dtype != mu.dtype:
        raise failure("shape and dtype of reparameterize(mu, logvar)", inputs, f"shape {tuple(shape)}, {mu.dtype}", z)
    expect_near_mean(z, mu, logvar)
    return z


@pytest.mark.points(2)
def test_shape_and_dtype(student):
    """The sample has the broadcast shape of mu and logvar, follows their dtype, and lies near mu."""
    sample(student, torch.full((7, 3), 3.0), torch.tensor([-6.0, -4.0, 0.5]))
    sample(student, torch.full((2, 5, 4), -2.0, dtype=torch.float64), torch.full((2, 5, 4), -3.0, dtype=torch.float64))


@pytest.mark.points(3)
def test_mean_and_standard_deviation(student):
    """Samples have mean mu and standard deviation exp(logvar / 2), for log-variances from -35 to 25."""
    mu = torch.tensor([0.0, 1.5, -2.0, 3.0, 0.0, 0.5])
    logvar = torch.tensor([0.0, 1.0, -2.0, 2.0, -35.0, 25.0])  # beyond +-4: no clamping
    z = draw_many(student, mu, logvar)
    std = torch.exp(0.5 * logvar).double()
    mean_error = (z.mean(0) - mu).abs() / (std / math.sqrt(DRAWS))
    sample_std = z.std(0)
    std_error = (sample_std - std).abs() / (std / math.sqrt(2 * DRAWS))
    inputs = show_inputs(NAMES, (mu, logvar))
    if torch.allclose(sample_std, torch.zeros_like(std), atol=1e-6):
        raise failure("the standard deviation of the samples", inputs, std, sample_std, mistake=HINTS["reparam_no_noise"])
    if torch.allclose(sample_std, torch.exp(logvar).double(), rtol=0.05) and not torch.allclose(sample_std, std, rtol=0.05):
        raise failure("the standard deviation of the samples", inputs, std, sample_std, mistake=HINTS["reparam_std_is_exp_logvar"])
    if (mean_error > 6).any():
        raise failure(f"the mean of {DRAWS} samples per coordinate", inputs, mu, z.mean(0))
    if (std_error > 6).any():
        raise failure(f"the standard deviation of {DRAWS} samples per coordinate", inputs, std, sample_std,
                      "is the log-variance clamped, or the standard deviation computed another way than exp(logvar / 2)?")


@pytest.mark.points(1)
def test_broadcasting(student):
    """Either argument may carry the batch axes: every entry of the broadcast shape gets its own noise."""
    mu, logvar = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.0, 1.0, -2.0])
    batched = (mu.expand(DRAWS, 3).contiguous(), logvar.expand(DRAWS, 3).contiguous())
    for args, carrier in (((mu, batched[1]), "logvar"), ((batched[0], logvar), "mu")):
        z = sample(student, *args).double()
        std = torch.exp(0.5 * logvar).double()
        if ((z.std(0) - std).abs() / (std / math.sqrt(2 * DRAWS)) > 6).any():
            raise failure(f"the standard deviation over a batch axis that only `{carrier}` has ({DRAWS} rows)",
                          show_inputs(NAMES, args), std, z.std(0),
                          "eps must have the broadcast shape of mu and logvar: torch.randn_like(mu) or "
                          "torch.randn_like(std) has the shape of one argument only.")


@pytest.mark.points(1)
def test_noise_is_standard_normal(student):
    """The noise is Gaussian: about 4.55% of draws lie beyond two standard deviations of the mean."""
    mu, logvar = torch.full((5,), 2.0), torch.full((5,), math.log(4.0))
    z = draw_many(student, mu, logvar)
    beyond = ((z - 2.0).abs() > 2 * 2.0).double().mean()
    standard_error = math.sqrt(0.0455 * 0.9545 / z.numel())
    if abs(beyond - 0.0455) > 6 * standard_error:
        raise failure("the share of samples beyond 2 standard deviations of the mean (4.55% for a normal distribution)",
                      show_inputs(NAMES, (mu, logvar)), torch.tensor(0.0455), beyond,
                      "is eps drawn from N(0, I), e.g. with torch.randn_like, and not from a uniform distribution?")


@pytest.mark.points(2)
def test_fresh_noise_per_element(student):
    """Each example of a batch gets its own noise (batch 9, z_dim 3)."""
    mu, logvar = torch.full((9, 3), -2.0), torch.full((9, 3), -4.0)
    z = sample(student, mu, logvar)
    if torch.unique(z.reshape(-1)).numel() < z.numel():
        raise failure("that every entry of the sample gets its own noise", show_inputs(NAMES, (mu, logvar)),
                      "27 different values", z, mistake=HINTS["reparam_shared_noise"])


@pytest.mark.points(1)
def test_fresh_noise_per_call(student):
    """Two calls give different samples."""
    mu, logvar = torch.full((4, 2), 1.0), torch.full((4, 2), -6.0)
    first, second = student.call(PROBLEM, mu, logvar, repeat=2)["out"]
    if type(first) is not torch.Tensor or type(second) is not torch.Tensor or torch.equal(first, second):
        raise failure("that a second call draws new noise", show_inputs(NAMES, (mu, logvar)),
                      "two different samples", second, "the noise must be drawn anew at every call, not once and stored.")
    expect_near_mean(first, mu, logvar)


@pytest.mark.points(1)
def test_repeatable_under_manual_seed(student):
    """torch.manual_seed makes the sample repeatable (noise from torch's global generator)."""
    mu, logvar = torch.full((4, 2), -3.0), torch.full((4, 2), -4.0)
    first = sample(student, mu, logvar, rng_seed=123)
    second = sample(student, mu, logvar, rng_seed=123)
    if not torch.equal(first, second):
        raise failure("that torch.manual_seed(123) before each call gives the same sample twice",
                      show_inputs(NAMES, (mu, logvar)), first, second, mistake=HINTS["reparam_not_torch_rng"])


@pytest.mark.points(4)
def test_gradients(student):
    """dz/dmu = 1 and dz/dlogvar = exp(logvar / 2) * eps / 2 = (z - mu) / 2 for the drawn z, for log-variances from -35 to 25."""
    mu = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 1.0, -35.0], [25.0, -2.0, 0.5]], dtype=torch.float64)
    inputs = show_inputs(NAMES, (mu, logvar))
    reply = student.call(PROBLEM, mu, logvar, grad_args=(0, 1))
    z, (grad_mu, grad_logvar) = reply["out"], reply["grads"]
    if grad_mu is None or grad_logvar is None or not grad_mu.abs().sum() > 0:
        raise failure("that gradients flow from z to mu and logvar", inputs, "gradients for both", reply["grads"],
                      mistake=HINTS["reparam_no_gradient"])
    z = expect_tensor(z, PROBLEM, inputs)
    expect_near_mean(z, mu, logvar)
    expect = [(grad_mu, torch.ones_like(mu), "dz/dmu"), (grad_logvar, (z.double() - mu) / 2, "dz/dlogvar")]
    for got, want, what in expect:
        if got.shape != want.shape or not torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6):
            raise failure(f"{what} for the sample drawn", inputs, want, got,
                          "z must be mu + exp(logvar / 2) * eps with eps not depending on mu or logvar.")
