"""Hidden tests of the `VAE` class.

Every model request runs with a known-good `reparameterize` (and the training with a
known-good loss) in place of the student's, so a wrong sampler or likelihood costs no points
here: it is graded in its own problem.
"""
import math

import pytest
import torch

from assignment.contract import ELBO_FLOOR_MARGIN, ELBO_MARGIN, ELBO_PLAUSIBLE_MARGIN
from autograder import model_check
from autograder.feedback import failure
from autograder.hidden_tests.support import problem_of_test_file
from autograder.mistakes import mistakes_for

PROBLEM = problem_of_test_file(__file__)
HINTS = {m.code: m for m in mistakes_for(PROBLEM)}
SEED = 2024  # torch's random state at the start of requests that must draw the same numbers
# Square x_dims only (side x side images, ASSIGNMENT_SPEC.md Problem 7): a conv net may refuse others.
SIZES = [{"x_dim": 64, "z_dim": 2, "hidden_dim": 256}, {"x_dim": 16, "z_dim": 3, "hidden_dim": 16},
         {"x_dim": 36, "z_dim": 5, "hidden_dim": 8}]
MODES = {True: "training mode", False: "evaluation mode"}


def inputs(rows: int, x_dim: int) -> torch.Tensor:
    """Binary images whose rows differ (no x_dim used is a multiple of 7)."""
    return (torch.arange(rows * x_dim).reshape(rows, x_dim) % 7 == 0).float()


def expect_shape(value, shape, checked, kwargs, hint=None, mistake=None):
    if type(value) is not torch.Tensor or tuple(value.shape) != tuple(shape):
        raise failure(checked, f"VAE({', '.join(f'{k}={v}' for k, v in kwargs.items())})",
                      f"a tensor of shape {tuple(shape)}", value, hint, mistake)


def expect_rows_differ(value, checked, kwargs, inputs_differ="inputs"):
    """A method that ignores its input gives every row the same output: no points for that."""
    if len(value) > 1 and torch.equal(value, value[:1].expand_as(value)):
        raise failure(checked, f"VAE({', '.join(f'{k}={v}' for k, v in kwargs.items())}) and different {inputs_differ}",
                      "different outputs for different inputs", value,
                      "the output must be computed from the input, not a constant or a placeholder.")


def outputs(reply, count, method):
    out = reply["out"]
    if not isinstance(out, list) or len(out) != count:
        raise failure(f"{method} returns {count} tensors", expected=f"{count} tensors", got=out)
    return out


@pytest.mark.points(3)
def test_constructor_and_encode(student):
    """VAE(x_dim, z_dim, hidden_dim) builds for several sizes; encode gives (batch, z_dim) mu and logvar."""
    for kwargs in SIZES:
        model = student.new_model(**kwargs)
        mu, logvar = outputs(student.model_call(model, "encode", inputs(7, kwargs["x_dim"])), 2, "encode(x)")
        for name, value in (("mu", mu), ("logvar", logvar)):
            expect_shape(value, (7, kwargs["z_dim"]), f"the shape of {name} from encode(x) with x of shape (7, {kwargs['x_dim']})", kwargs)
        expect_rows_differ(torch.cat([mu, logvar], -1)[:3], "that encode(x) depends on x", kwargs, "rows of x")


@pytest.mark.points(3)
def test_decode_keeps_leading_dimensions(student):
    """decode maps (..., z_dim) to (..., x_dim) logits, keeping every leading dimension."""
    for kwargs in SIZES[1:]:
        model = student.new_model(**kwargs)
        for lead in [(4,), (3, 5)]:
            z = torch.linspace(-2, 2, torch.Size(lead).numel() * kwargs["z_dim"]).reshape(*lead, kwargs["z_dim"])
            logits = student.model_call(model, "decode", z)["out"]
            expect_shape(logits, (*lead, kwargs["x_dim"]), f"the shape of decode(z) for z of shape {tuple(z.shape)}",
                         kwargs, mistake=HINTS["vae_decode_drops_leading_dims"] if len(lead) == 2 else None)
            expect_rows_differ(logits.reshape(-1, kwargs["x_dim"]), "that decode(z) depends on z", kwargs, "rows of z")


@pytest.mark.points(4)
def test_forward_is_encode_reparameterize_decode(student):
    """forward(x) returns (logits, mu, logvar) = (decode(mu + exp(logvar / 2) * eps), *encode(x)) with z from reparameterize, in training and in evaluation mode."""
    kwargs = SIZES[1]
    model, x = student.new_model(**kwargs), inputs(6, kwargs["x_dim"])
    eps = torch.linspace(-1.5, 1.5, 6 * kwargs["z_dim"]).reshape(6, kwargs["z_dim"])
    for training, mode in MODES.items():
        # Both requests start from the same random state, so a model with dropout draws the same
        # masks in forward as in encode-then-decode.
        reply = student.request("model_call", rng_seed=SEED, handle=model, method="forward", args=[x], eps=eps,
                                training=training)
        logits, mu, logvar = outputs(reply, 3, "forward(x)")
        if not reply["reparameterize_called"]:
            raise failure("that forward(x) draws z with `reparameterize(mu, logvar)`", f"x of shape (6, 16), {mode}",
                          "a call to reparameterize", "no call", mistake=HINTS["vae_forward_no_sampling"])
        composed = student.request("model_composed", rng_seed=SEED, handle=model, x=x, eps=eps, training=training)
        expected_logits, mu_e, logvar_e = outputs(composed, 3, "encode(x) then decode(z)")
        for name, got, want in (("mu", mu, mu_e), ("logvar", logvar, logvar_e), ("logits", logits, expected_logits)):
            if type(got) is not torch.Tensor or type(want) is not torch.Tensor or got.shape != want.shape \
                    or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                raise failure(f"that forward(x)'s {name} equals the one from encode -> reparameterize -> decode",
                              f"x of shape (6, 16) and fixed noise eps, {mode}, the same random state for both", want, got,
                              "forward must return (logits, mu, logvar) in this order, with z = reparameterize(mu, logvar).")


@pytest.mark.points(3)
def test_gradients_reach_encoder_and_decoder(student):
    """The reconstruction term's gradient reaches the decoder and, through z, the encoder."""
    kwargs = SIZES[1]
    model, x = student.new_model(**kwargs), inputs(6, kwargs["x_dim"])
    eps = torch.linspace(-1.0, 1.0, 6 * kwargs["z_dim"]).reshape(6, kwargs["z_dim"])
    reply = student.request("model_gradients", handle=model, x=x, eps=eps)
    if not reply.get("parameters"):
        raise failure("that the model has trainable parameters", expected="parameters", got="none")
    reconstruction, encoder, decoder = reply["reconstruction"], reply["encoder"], reply["decoder"]
    for part, mask in (("encoder", encoder & ~decoder), ("decoder", decoder)):
        if not (reconstruction & mask).any():
            raise failure(f"that the gradient of log p(x | z) reaches the {part}'s parameters",
                          "x of shape (6, 16)", "non-zero gradients", "none",
                          "is something detached (mu, logvar or z), or computed outside torch?")


@pytest.mark.points(4)
def test_sample_from_the_prior(student):
    """sample(n) gives (n, x_dim) probabilities in [0, 1] decoded from z ~ N(0, I)."""
    handle, _ = model_check.trained(student)
    probs = student.model_call(handle, "sample", 4000)["out"]
    expect_shape(probs, (4000, 64), "the shape of sample(4000)", model_check.MODEL_KWARGS)
    if not torch.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise failure("that sample(n) returns probabilities in [0, 1]", "n = 4000", "values in [0, 1]", probs,
                      "apply torch.sigmoid to the decoder's logits.")
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(7))
    reference_probs = torch.sigmoid(student.model_call(handle, "decode", z)["out"])
    gap = (probs.mean(0) - reference_probs.mean(0)).abs().max()
    if gap > 0.08:
        raise failure("that the mean image of sample(4000) matches sigmoid(decode(z)) for z ~ N(0, I)",
                      "4000 samples from the trained model", reference_probs.mean(0), probs.mean(0),
                      mistake=HINTS["vae_sample_not_prior"])


def check_heldout_elbo(student, margin, record_property):
    """The trained model's held-out ELBO against the reference's; the numbers go into the
    record's "model" through pytest's record_property (scoring gathers them)."""
    _, reply = model_check.trained(student)
    n, z_dim = len(model_check.heldout_data()), model_check.MODEL_KWARGS["z_dim"]
    for name, shape in (("mu", (n, z_dim)), ("logvar", (n, z_dim)), ("logits", (model_check.EVALUATION_DRAWS, n, 64))):
        expect_shape(reply[name], shape, f"the shape of the trained model's {name} on the held-out digits", model_check.MODEL_KWARGS)
    got = model_check.heldout_elbo(reply["mu"], reply["logvar"], reply["logits"])
    target = model_check.reference_heldout_elbo()
    steps = reply["steps"]  # counted by the grader
    record_property("heldout_elbo", round(got, 4) if math.isfinite(got) else None)
    record_property("reference_heldout_elbo", round(target, 4))
    for name, value in model_check.how_trained(student, reply).items():
        record_property(name, value)
    if model_check.implausibly_good(got, target):
        record_property("flagged", True)
        raise failure("that the held-out ELBO is one a VAE can reach in this budget",
                      "the 297 held-out digits", f"at most {target + ELBO_PLAUSIBLE_MARGIN:.2f} nats "
                      f"(reference {target:.2f}; no legitimate model comes within 2 nats of this)", f"{got:.2f} nats",
                      "flagged for the instructor's review: these points wait for it. A model that remembers the images "
                      "it was shown, or reads the held-out split, earns none.")
    if model_check.pretrained(reply):
        record_property("flagged", True)
        (_, before_training), *_ = reply["checkpoints"]
        raise failure("that the model earns its held-out ELBO in the training the grader gives it",
                      "the 297 held-out digits, the model as built, before the first of its Adam steps",
                      f"far below the pass mark {target - ELBO_MARGIN:.2f} (an untrained VAE is near -44 nats)",
                      f"{before_training:.2f} nats",
                      "flagged for the instructor's review: these points wait for it. A model that brings its "
                      "training along (trained while the notebook loads, or weights pasted in) earns none.")
    if not got >= target - margin:  # also fails for nan
        mistake = None
        if reply["logits"].min() >= 0 and reply["logits"].max() <= 1:
            mistake = HINTS["vae_decoder_outputs_probabilities"]
        raise failure(f"the held-out ELBO after {steps} Adam steps "
                      f"(batch {model_check.BUDGET.batch_size}) is at least the reference's minus {margin} nats",
                      "the 297 held-out digits", f"{target - margin:.2f} nats or more (reference {target:.2f})",
                      f"{got:.2f} nats", mistake=mistake)


@pytest.mark.points(10)
def test_heldout_elbo_close_to_reference(student, record_property):
    """Within the training budget (1000 Adam steps; stopped early once close enough), the held-out ELBO is within 2.5 nats of the reference model's."""
    check_heldout_elbo(student, ELBO_MARGIN, record_property)


@pytest.mark.points(3)
def test_heldout_elbo_reasonable(student, record_property):
    """Within the training budget (1000 Adam steps), the held-out ELBO is within 6 nats of the reference model's."""
    check_heldout_elbo(student, ELBO_FLOOR_MARGIN, record_property)
