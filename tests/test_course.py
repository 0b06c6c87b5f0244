"""Tests of the public course module: the bundled data, the training loop, the plots."""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assignment" / "public"))
import vae_course  # noqa: E402


class TinyVAE(nn.Module):
    """A small stand-in that follows the contract's VAE interface (z_dim = 2)."""

    def __init__(self, x_dim: int = 64, z_dim: int = 2, hidden_dim: int = 16):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, x_dim))

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=-1)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n):
        return torch.sigmoid(self.decode(torch.randn(n, self.z_dim)))


def tiny_elbo(x, logits, mu, logvar):
    log_lik = (x * logits - nn.functional.softplus(logits)).sum(-1)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
    return log_lik - kl


def tiny_loss(model, x):
    return -tiny_elbo(x, *model(x)).mean()


def fresh_model(z_dim: int = 2) -> TinyVAE:
    torch.manual_seed(123)
    return TinyVAE(z_dim=z_dim)


def test_data_shapes_dtypes_and_values():
    sizes = {}
    for split in ("train", "heldout"):
        x, y = vae_course.load_digits(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(y), 64)
        assert set(x.unique().tolist()) == {0.0, 1.0}
        assert set(y.unique().tolist()) == set(range(10))
        sizes[split] = len(y)
    assert sizes == {"train": 1500, "heldout": 297}  # 1797 = all of sklearn's load_digits


def test_splits_are_not_the_same_images():
    # The split is by index; after binarising, a few held-out images can still equal a
    # training image (13 do), but the held-out set must be mostly unseen images.
    train = {row.tobytes() for row in vae_course.load_digits("train")[0].numpy()}
    heldout = vae_course.load_digits("heldout")[0].numpy()
    repeated = sum(row.tobytes() in train for row in heldout)
    assert repeated < 0.1 * len(heldout)


def test_bad_split_raises_value_error():
    with pytest.raises(ValueError, match="heldout"):
        vae_course.load_digits("test")


def test_missing_file_says_where_it_belongs(tmp_path):
    with pytest.raises(FileNotFoundError, match="beside the notebook"):
        vae_course.load_digits("train", path=tmp_path / "digits.npz")


def test_train_vae_is_deterministic_and_learns():
    x, _ = vae_course.load_digits("train")
    runs = [vae_course.train_vae(fresh_model(), tiny_loss, x, steps=20, batch_size=32, lr=1e-2, seed=7)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert len(runs[0]) == 20 and all(isinstance(v, float) for v in runs[0])
    assert np.mean(runs[0][-5:]) < np.mean(runs[0][:5])
    other = vae_course.train_vae(fresh_model(), tiny_loss, x, steps=20, batch_size=32, lr=1e-2, seed=8)
    assert other != runs[0]


def test_train_vae_stops_when_asked_after_the_same_steps_as_a_full_run():
    x, _ = vae_course.load_digits("train")
    full = vae_course.train_vae(fresh_model(), tiny_loss, x, steps=20, batch_size=32, lr=1e-2, seed=7)
    asked = []
    stopped = vae_course.train_vae(fresh_model(), tiny_loss, x, steps=20, batch_size=32, lr=1e-2, seed=7,
                                   stop=lambda step: asked.append(step) or step == 12)
    assert asked == list(range(1, 13)) and stopped == full[:12]


def test_train_vae_rejects_unreduced_loss():
    x, _ = vae_course.load_digits("train")
    with pytest.raises(ValueError, match="scalar"):
        vae_course.train_vae(fresh_model(), lambda m, xb: -tiny_elbo(xb, *m(xb)), x, steps=1)


def test_estimate_heldout_elbo_is_the_graders_value():
    from autograder import model_check  # the grader's own computation, with the reference elbo

    x, _ = vae_course.load_digits("heldout")
    model = fresh_model()
    estimate = vae_course.estimate_heldout_elbo(model, tiny_elbo, x)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        logits = model.decode(mu + torch.exp(0.5 * logvar) * model_check.evaluation_noise(len(x), 2))
    assert estimate == pytest.approx(model_check.heldout_elbo(mu, logvar, logits), abs=1e-9)
    assert model_check.evaluation_noise(len(x), 2).shape == (vae_course.EVALUATION_DRAWS, len(x), 2)


def beta_elbo(x, logits, mu, logvar, beta=1.0):
    log_lik = (x * logits - nn.functional.softplus(logits)).sum(-1)
    return log_lik - beta * 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)


def test_elbo_loss_keeps_the_two_terms_of_every_step():
    x, _ = vae_course.load_digits("train")
    loss = vae_course.ElboLoss(beta_elbo, beta=2.0)
    losses = vae_course.train_vae(fresh_model(), loss, x, steps=5)
    assert len(loss.reconstruction) == len(loss.kl) == 5
    for total, reconstruction, kl in zip(losses, loss.reconstruction, loss.kl):
        assert total == pytest.approx(reconstruction + 2.0 * kl, rel=1e-5)
        assert reconstruction > 0 and kl >= 0


def test_training_stops_at_the_first_loss_that_is_not_finite():
    x, _ = vae_course.load_digits("train")
    calls = []

    def loss_nan_at_step_3(model, xb):
        calls.append(1)
        loss = tiny_loss(model, xb)
        return loss * float("nan") if len(calls) == 3 else loss

    with pytest.raises(FloatingPointError, match="the training loss at step 3 is nan"):
        vae_course.train_vae(fresh_model(), loss_nan_at_step_3, x, steps=10)
    assert len(calls) == 3


def test_require_finite_names_what_is_not_finite():
    vae_course.require_finite(torch.tensor([1.0, -2.0]), "fine")
    with pytest.raises(FloatingPointError, match="the gap is inf"):
        vae_course.require_finite(float("inf"), "the gap")
    with pytest.raises(FloatingPointError, match="a bound is 2 entries not finite"):
        vae_course.require_finite(torch.tensor([1.0, float("nan"), -float("inf")]), "a bound")


def test_plots_return_figures():
    x, y = vae_course.load_digits("heldout")
    model = fresh_model()
    figures = [
        vae_course.plot_losses([3.0, 2.0, 1.5] * 40),
        vae_course.plot_reconstructions(model, x, n=6),
        vae_course.plot_samples(model, n=12),
        vae_course.plot_latent_map(model, x, y, label="beta = 4"),
        vae_course.plot_latent_grid(model, n=5),
        vae_course.plot_losses([3.0, 2.0] * 60, reconstruction=[2.0, 1.5] * 60, kl=[1.0, 0.5] * 60),
        vae_course.plot_digits(x, y),
        vae_course.plot_beta_comparison({"beta = 1": model, "beta = 4": fresh_model()}, x, n=4),
        vae_course.plot_iwae_bounds((1, 5, 50), [-22.0, -21.5, -21.2], elbo=-22.1),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        fig.canvas.draw()
    assert figures[0].axes[0].get_ylabel() == "nats per image"
    assert figures[3].axes[0].get_xlabel() == "$z_1$"
    assert figures[3].axes[0].get_title().endswith("(beta = 4)")
    assert len(figures[5].axes[0].get_lines()) == 4  # the loss per step, three averages
    assert figures[6].axes[0].get_title() == "one training image of each digit: 0 1 2 3 4 5 6 7 8 9"
    assert [ax.get_title() for ax in figures[7].axes] == [
        "originals", "beta = 1: reconstructions", "beta = 4: reconstructions",
        "beta = 1: samples from the prior", "beta = 4: samples from the prior"]


def test_latent_plots_need_two_latent_dimensions():
    x, y = vae_course.load_digits("heldout")
    model = fresh_model(z_dim=3)
    with pytest.raises(ValueError, match="z_dim"):
        vae_course.plot_latent_map(model, x, y)
    with pytest.raises(ValueError, match="z_dim"):
        vae_course.plot_latent_grid(model)
