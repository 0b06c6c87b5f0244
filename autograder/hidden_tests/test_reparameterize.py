"""Hidden tests of `reparameterize` (15 points).

A sampler may draw its noise in any way torch's global generator allows, so values are never
compared with a fixed tensor: the statistics tests use thresholds of six standard errors or
more, which a correct sampler fails with a probability far below one in a million, and the
gradient test uses the identity dz/dlogvar = (z - mu) / 2 that holds for every draw.
"""
import math

import pytest
import torch

from autograder.feedback import expect_tensor, failure, show_inputs
from autograder.mistakes import MISTAKES

PROBLEM = "reparameterize"
NAMES = ("mu", "logvar")
HINTS = {m.code: m for m in MISTAKES if m.problem == PROBLEM}
DRAWS = 20_000


def draw_many(student, mu, logvar):
    """DRAWS samples for each coordinate of (mu, logvar): shape (DRAWS, *mu.shape)."""
    big_mu, big_logvar = mu.expand(DRAWS, *mu.shape).contiguous(), logvar.expand(DRAWS, *logvar.shape).contiguous()
    z = expect_tensor(student.call(PROBLEM, big_mu, big_logvar)["out"], PROBLEM, show_inputs(NAMES, (big_mu, big_logvar)))
    if z.shape != big_mu.shape:
        raise failure("the shape of reparameterize(mu, logvar)", show_inputs(NAMES, (big_mu, big_logvar)),
                      f"shape {tuple(big_mu.shape)}", z)
    return z.double()


@pytest.mark.points(2)
def test_shape_and_dtype(student):
    """The sample has the broadcast shape of mu and logvar and follows their dtype."""
    for mu, logvar in [(torch.zeros(7, 3), torch.zeros(3)), (torch.zeros(2, 5, 4, dtype=torch.float64), torch.zeros(2, 5, 4, dtype=torch.float64))]:
        shape = torch.broadcast_shapes(mu.shape, logvar.shape)
        z = expect_tensor(student.call(PROBLEM, mu, logvar)["out"], PROBLEM, show_inputs(NAMES, (mu, logvar)))
        if z.shape != shape or z.dtype != mu.dtype:
            raise failure("shape and dtype of reparameterize(mu, logvar)", show_inputs(NAMES, (mu, logvar)),
                          f"shape {tuple(shape)}, {mu.dtype}", z)


@pytest.mark.points(4)
def test_mean_and_standard_deviation(student):
    """Samples have mean mu and standard deviation exp(logvar / 2)."""
    mu = torch.tensor([0.0, 1.5, -2.0, 3.0])
    logvar = torch.tensor([0.0, 1.0, -2.0, 2.0])
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
        raise failure(f"the standard deviation of {DRAWS} samples per coordinate", inputs, std, sample_std)


@pytest.mark.points(1)
def test_noise_is_standard_normal(student):
    """The noise is Gaussian: about 4.55% of draws lie beyond two standard deviations."""
    mu, logvar = torch.zeros(5), torch.zeros(5)
    z = draw_many(student, mu, logvar)
    beyond = (z.abs() > 2).double().mean()
    standard_error = math.sqrt(0.0455 * 0.9545 / z.numel())
    if abs(beyond - 0.0455) > 6 * standard_error:
        raise failure("the share of samples beyond 2 standard deviations (4.55% for a normal distribution)",
                      show_inputs(NAMES, (mu, logvar)), torch.tensor(0.0455), beyond,
                      "is eps drawn from N(0, I), e.g. with torch.randn_like, and not from a uniform distribution?")


@pytest.mark.points(2)
def test_fresh_noise_per_element(student):
    """Each example of a batch gets its own noise (batch 9, z_dim 3)."""
    mu, logvar = torch.zeros(9, 3), torch.zeros(9, 3)
    z = expect_tensor(student.call(PROBLEM, mu, logvar)["out"], PROBLEM, show_inputs(NAMES, (mu, logvar)))
    if z.shape != mu.shape:
        raise failure("the shape of the sample", show_inputs(NAMES, (mu, logvar)), "shape (9, 3)", z)
    if torch.unique(z.reshape(-1)).numel() < z.numel():
        raise failure("that every entry of the sample gets its own noise", show_inputs(NAMES, (mu, logvar)),
                      "27 different values", z, mistake=HINTS["reparam_shared_noise"])


@pytest.mark.points(1)
def test_fresh_noise_per_call(student):
    """Two calls give different samples."""
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 2)
    first, second = student.call(PROBLEM, mu, logvar, repeat=2)["out"]
    if type(first) is not torch.Tensor or type(second) is not torch.Tensor or torch.equal(first, second):
        raise failure("that a second call draws new noise", show_inputs(NAMES, (mu, logvar)),
                      "two different samples", second, "the noise must be drawn anew at every call, not once and stored.")


@pytest.mark.points(1)
def test_repeatable_under_manual_seed(student):
    """torch.manual_seed makes the sample repeatable (noise from torch's global generator)."""
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 2)
    first = student.call(PROBLEM, mu, logvar, rng_seed=123)["out"]
    second = student.call(PROBLEM, mu, logvar, rng_seed=123)["out"]
    if type(first) is not torch.Tensor or type(second) is not torch.Tensor or not torch.equal(first, second):
        raise failure("that torch.manual_seed(123) before each call gives the same sample twice",
                      show_inputs(NAMES, (mu, logvar)), first, second, mistake=HINTS["reparam_not_torch_rng"])


@pytest.mark.points(4)
def test_gradients(student):
    """dz/dmu = 1 and dz/dlogvar = exp(logvar / 2) * eps / 2 = (z - mu) / 2 for the drawn z."""
    mu = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 1.0, -1.0], [2.0, -2.0, 0.5]], dtype=torch.float64)
    inputs = show_inputs(NAMES, (mu, logvar))
    reply = student.call(PROBLEM, mu, logvar, grad_args=(0, 1))
    z, (grad_mu, grad_logvar) = reply["out"], reply["grads"]
    if grad_mu is None or grad_logvar is None or not grad_mu.abs().sum() > 0:
        raise failure("that gradients flow from z to mu and logvar", inputs, "gradients for both", reply["grads"],
                      mistake=HINTS["reparam_no_gradient"])
    expect = [(grad_mu, torch.ones_like(mu), "dz/dmu"), (grad_logvar, (z.double() - mu) / 2, "dz/dlogvar")]
    for got, want, what in expect:
        if got.shape != want.shape or not torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6):
            raise failure(f"{what} for the sample drawn", inputs, want, got,
                          "z must be mu + exp(logvar / 2) * eps with eps not depending on mu or logvar.")
