"""Course helpers for the VAE assignment: the digits data, the training loop, the plots.

This file ships beside the notebook (`from vae_course import ...`); it needs only torch,
numpy and matplotlib. The plot helpers return a matplotlib Figure and leave it closed in
pyplot, so a notebook cell shows it once when the call is the cell's last line (or with
`display(fig)`); in a script, use `fig.savefig(...)`.
"""
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

DATA_PATH = Path(__file__).resolve().parent / "digits.npz"
SPLITS = ("train", "heldout")
# How the grader scores a trained model's held-out ELBO: the same fixed noise for every model.
EVALUATION_DRAWS = 10
EVALUATION_SEED = 1234


def load_digits(split: str = "train", path: str | Path | None = None) -> tuple[Tensor, Tensor]:
    """Binarised 8x8 digits of a split: x float32 (N, 64) in {0, 1}, y int64 labels (N,)."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    path = Path(DATA_PATH if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(
            f"digits data not found at {path}: digits.npz must sit beside the notebook "
            "(in the same folder as vae_course.py)"
        )
    with np.load(path) as data:
        x = torch.from_numpy(data[f"{split}_x"].astype(np.float32))
        y = torch.from_numpy(data[f"{split}_y"].astype(np.int64))
    return x, y


def adam_optimizer(parameters: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam, with its fused kernel where this torch has one for these parameters: one call per
    step instead of a loop over the parameters, about a fifth off a small model's training."""
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(parameters, lr=lr)


def train_vae(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Tensor], Tensor],
    x_train: Tensor,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
    stop: Callable[[int], bool] | None = None,
) -> list[float]:
    """Train `model` with Adam on minibatches of `x_train`; returns the loss of every step.

    `loss_fn(model, x_batch)` returns a scalar, e.g. `lambda m, x: -elbo(x, *m(x)).mean()`.
    The same seed gives the same batches and the same noise inside the model.
    `stop(steps_done)`, when given, is called after every step: training ends when it says True.
    Training stops with FloatingPointError at the first loss that is nan or infinite (after
    it, Adam would turn every parameter into nan).
    """
    losses: list[float] = []
    if steps < 1:
        return losses
    for step, loss in enumerate(training_steps(model, loss_fn, x_train, batch_size=batch_size, lr=lr, seed=seed),
                                start=1):
        losses.append(loss)
        if progress and (step % max(1, steps // 10) == 0 or step == steps):
            print(f"step {step:5d}/{steps}  loss {loss:8.3f}")
        if step == steps or (stop is not None and stop(step)):
            break
    return losses


def training_steps(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Tensor], Tensor],
    x_train: Tensor,
    *,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> Iterator[float]:
    """The loop of `train_vae`, one step at a time: yields the loss of each step, for as long as
    it is asked (the grader drives it so, counting the steps itself)."""
    torch.manual_seed(seed)  # the model's own draws (reparameterize) become repeatable
    generator = torch.Generator().manual_seed(seed)  # the order of the minibatches
    device = next(model.parameters()).device
    optimizer = adam_optimizer(list(model.parameters()), lr)
    model.train()
    order, start, step = torch.empty(0, dtype=torch.long), 0, 0
    while True:
        step += 1
        if start + batch_size > len(order):  # a new epoch: a fresh seeded shuffle
            order, start = torch.randperm(len(x_train), generator=generator), 0
        x_batch = x_train[order[start:start + batch_size]].to(device)
        start += batch_size
        loss = loss_fn(model, x_batch)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)} "
                             "(did you forget .mean()?)")
        require_finite(loss, f"the training loss at step {step}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        yield loss.item()


def require_finite(value: Tensor | float, what: str) -> None:
    """Raise FloatingPointError saying `what` when `value` holds a nan or an infinity."""
    value = torch.as_tensor(value).detach()
    if not torch.isfinite(value).all():
        shown = value.item() if value.numel() == 1 else f"{(~torch.isfinite(value)).sum()} entries not finite"
        raise FloatingPointError(f"{what} is {shown}")


class ElboLoss:
    """The training loss -elbo(x, *model(x), beta).mean(), keeping each step's two terms.

    `reconstruction[i]` is the mean of -log p(x | z) and `kl[i]` the mean KL(q(z | x) || p(z))
    at step i, both read off `elbo` itself (with beta = 0 it is log p(x | z) alone), so they
    are what your elbo computes."""

    def __init__(self, elbo: Callable[..., Tensor], beta: float = 1.0):
        self.elbo, self.beta = elbo, beta
        self.reconstruction: list[float] = []
        self.kl: list[float] = []

    def __call__(self, model: nn.Module, x: Tensor) -> Tensor:
        logits, mu, logvar = model(x)
        loss = -self.elbo(x, logits, mu, logvar, beta=self.beta).mean()
        with torch.no_grad():
            likelihood = self.elbo(x, logits, mu, logvar, beta=0.0).mean()
            self.reconstruction.append(-likelihood.item())
            self.kl.append((likelihood - self.elbo(x, logits, mu, logvar, beta=1.0).mean()).item())
        return loss


def evaluation_noise(examples: int, z_dim: int) -> Tensor:
    """The grader's fixed eps, of shape (EVALUATION_DRAWS, examples, z_dim)."""
    generator = torch.Generator().manual_seed(EVALUATION_SEED)
    return torch.randn(EVALUATION_DRAWS, examples, z_dim, generator=generator)


@torch.no_grad()
def estimate_heldout_elbo(model: nn.Module, elbo_fn: Callable[..., Tensor], x: Tensor) -> float:
    """The held-out ELBO as the grader computes it (nats per image): z = mu + sigma * eps for
    its fixed noise `evaluation_noise`, the mean of `elbo_fn` in float64 over draws and images."""
    device = next(model.parameters()).device
    x = x.to(device)
    mu, logvar = model.encode(x)
    eps = evaluation_noise(len(x), mu.shape[-1]).to(device)
    logits = model.decode(mu + torch.exp(0.5 * logvar) * eps)
    value = elbo_fn(x.double(), logits.double(), mu.double(), logvar.double()).mean().item()
    require_finite(value, "the held-out ELBO")
    return value


def _tile(images: Tensor, ncols: int, pad: float = 0.5) -> np.ndarray:
    """(n, 64) pixel values in [0, 1] to one image of 8x8 tiles, `ncols` per row."""
    images = images.detach().float().cpu().reshape(-1, 8, 8).numpy()
    nrows = -(-len(images) // ncols)
    canvas = np.full((nrows * 9 + 1, ncols * 9 + 1), pad, dtype=np.float32)
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        canvas[row * 9 + 1:row * 9 + 9, col * 9 + 1:col * 9 + 9] = image
    return canvas


def _figure(nrows: int = 1, figsize: tuple[float, float] = (6.0, 4.0)):
    import matplotlib.pyplot as plt  # lazily, with whatever backend is active

    fig, axes = plt.subplots(nrows, 1, figsize=figsize, squeeze=False)
    plt.close(fig)  # the caller shows it: no second copy from pyplot in notebooks
    return fig, axes[:, 0]


def _show_tiles(ax, canvas: np.ndarray, title: str) -> None:
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)


def plot_losses(losses: Sequence[float], reconstruction: Sequence[float] = (),
                kl: Sequence[float] = ()):
    """Training loss per step with a moving average; with `reconstruction` and `kl` (e.g. an
    ElboLoss's), the moving averages of the two terms too: loss = reconstruction + beta KL."""
    fig, (ax,) = _figure()
    losses = np.asarray(losses, dtype=float)
    ax.plot(losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="-ELBO per step")
    window = max(1, len(losses) // 50)
    curves = [(losses, "tab:blue", "-ELBO"), (reconstruction, "tab:orange", "reconstruction: -log p(x | z)"),
              (kl, "tab:green", "KL(q(z | x) || p(z))")]
    for values, color, label in curves:
        values = np.asarray(values, dtype=float)
        if len(values) >= window:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(window - 1, len(values)), smooth, color=color,
                    label=f"{label} ({window}-step average)")
    ax.set_xlabel("step")
    ax.set_ylabel("nats per image")
    ax.set_title("Training loss -ELBO = reconstruction + KL")
    ax.legend(fontsize="small")
    return fig


def plot_digits(x: Tensor, y: Tensor):
    """The first image of each digit 0-9 in `x` (labels `y`), drawn like every later plot."""
    labels = torch.as_tensor(y)
    firsts = [int(torch.nonzero(labels == digit)[0]) for digit in range(10) if (labels == digit).any()]
    fig, (ax,) = _figure(figsize=(7.0, 1.3))
    _show_tiles(ax, _tile(x[firsts], len(firsts)), "one training image of each digit: "
                + " ".join(str(int(labels[i])) for i in firsts))
    return fig


@torch.no_grad()
def plot_reconstructions(model: nn.Module, x: Tensor, n: int = 10):
    """The first `n` images of `x` (top) and sigmoid(logits) of model(x) (bottom)."""
    x = x[:n].to(next(model.parameters()).device)
    logits, _, _ = model(x)
    fig, (top, bottom) = _figure(2, figsize=(1.0 + 0.6 * len(x), 2.4))
    _show_tiles(top, _tile(x, len(x)), "originals")
    _show_tiles(bottom, _tile(torch.sigmoid(logits), len(x)), "reconstructions: sigmoid(logits)")
    return fig


@torch.no_grad()
def plot_samples(model: nn.Module, n: int = 20):
    """`n` images decoded from z ~ N(0, I) by model.sample (Bernoulli means)."""
    ncols = min(n, 10)
    fig, (ax,) = _figure(figsize=(0.6 * ncols + 1.0, 0.6 * -(-n // ncols) + 0.8))
    _show_tiles(ax, _tile(model.sample(n), ncols), f"{n} samples: decoded z ~ N(0, I)")
    return fig


@torch.no_grad()
def plot_beta_comparison(models: dict[str, nn.Module], x: Tensor, n: int = 10):
    """Per model (label -> model): reconstructions of the first `n` images of `x` and `n`
    samples from the prior, below the originals, one figure so the models compare at a glance."""
    device = next(next(iter(models.values())).parameters()).device
    x = x[:n].to(device)
    rows = [("originals", x)]
    for label, model in models.items():
        rows.append((f"{label}: reconstructions", torch.sigmoid(model(x)[0])))
    for label, model in models.items():
        rows.append((f"{label}: samples from the prior", model.sample(n)))
    fig, axes = _figure(len(rows), figsize=(1.0 + 0.6 * n, 1.2 * len(rows)))
    for ax, (title, images) in zip(axes, rows):
        _show_tiles(ax, _tile(images, n), title)
    fig.tight_layout()
    return fig


def plot_iwae_bounds(ks: Sequence[int], bounds: Sequence[float], elbo: float | None = None):
    """The mean IWAE bound on held-out images against K (log scale), with the ELBO for reference."""
    fig, (ax,) = _figure(figsize=(5.0, 3.2))
    ax.plot(ks, bounds, marker="o", label="$\\mathcal{L}_K$")
    if elbo is not None:
        ax.axhline(elbo, color="gray", linestyle="--", label="ELBO (closed-form KL)")
    ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_xlabel("K (samples inside the log)")
    ax.set_ylabel("nats per image")
    ax.set_title("The IWAE bound tightens as K grows")
    ax.legend()
    fig.tight_layout()
    return fig


@torch.no_grad()
def plot_latent_map(model: nn.Module, x: Tensor, y: Tensor, label: str = ""):
    """Encoded means mu of `x` in the 2-D latent space, coloured by digit label `y`; `label`
    (e.g. "beta = 4") goes into the title."""
    mu, _ = model.encode(x.to(next(model.parameters()).device))
    if mu.shape[-1] != 2:
        raise ValueError(f"plot_latent_map needs a model with z_dim = 2, got z_dim = {mu.shape[-1]}")
    mu = mu.cpu().numpy()
    fig, (ax,) = _figure(figsize=(6.0, 5.0))
    points = ax.scatter(mu[:, 0], mu[:, 1], c=torch.as_tensor(y).cpu().numpy(), cmap="tab10", vmin=-0.5, vmax=9.5, s=8)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title("Latent map: encoder means by digit" + (f" ({label})" if label else ""))
    return fig


@torch.no_grad()
def plot_latent_grid(model: nn.Module, n: int = 15, bound: float = 3.0):
    """Decoded Bernoulli means of an n x n grid of z in [-bound, bound]^2 (z_2 grows upwards)."""
    device = next(model.parameters()).device
    values = torch.linspace(-bound, bound, n)
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")  # top row: largest z_2
    z = torch.stack([z1, z2], dim=-1).reshape(-1, 2).to(device)
    try:
        probs = torch.sigmoid(model.decode(z))
    except RuntimeError as error:
        raise ValueError("plot_latent_grid needs a model with z_dim = 2") from error
    fig, (ax,) = _figure(figsize=(6.0, 6.0))
    half = bound / max(n - 1, 1)  # half a grid step: each tile is centred on its z
    ax.imshow(_tile(probs, n), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest",
              extent=(-bound - half, bound + half, -bound - half, bound + half))
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(f"Decoder means on a {n} x {n} grid of z in [-{bound:g}, {bound:g}]$^2$")
    return fig
