"""Reference solutions of the VAE assignment (the contract is ASSIGNMENT_SPEC.md).

Each function below is also the solution cell of the student notebook: the notebook is
generated from this file (assignment/notebook.py), so the two can never drift apart.
The bodies of the functions and of the VAE methods become the students' stubs.

References
- [KW13] Kingma & Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114.
- [BGS15] Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", arXiv:1509.00519.
- [DL] Goodfellow, Bengio & Courville, "Deep Learning", sections 19.1, 20.9, 20.10.3.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gaussian_kl(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor | float = 0.0, logvar_p: Tensor | float = 0.0
) -> Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))), summed over the last dimension."""
    # Per coordinate: 1/2 [log(s_p^2 / s_q^2) + (s_q^2 + (mu_q - mu_p)^2) / s_p^2 - 1]
    # ([KW13] appendix B for p = N(0, I); the general case is the textbook formula).
    logvar_p = torch.as_tensor(logvar_p)  # a Python float is allowed for the prior
    kl = 0.5 * (
        logvar_p - logvar_q
        + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p)
        - 1.0
    )
    return kl.sum(dim=-1)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """A sample z ~ N(mu, exp(logvar)) that is differentiable in mu and logvar."""
    # z = mu + sigma * eps, eps ~ N(0, I) ([KW13] section 2.4, [DL] 20.9).
    mu, logvar = torch.broadcast_tensors(mu, logvar)
    eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """log p(x | z) of independent Bernoulli pixels with p = sigmoid(logits), summed over pixels."""
    # x log s(l) + (1 - x) log(1 - s(l)) = x l - log(1 + e^l) = x l - softplus(l),
    # written with softplus so that it stays finite for every finite logit.
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def elbo(x: Tensor, logits: Tensor, mu: Tensor, logvar: Tensor, beta: float = 1.0) -> Tensor:
    """Single-sample ELBO per example: E_q[log p(x | z)] - beta KL(q(z | x) || N(0, I))."""
    # [KW13] eq. (10); beta > 1 is the beta-VAE weighting (Higgins et al. 2017).
    return bernoulli_log_likelihood(x, logits) - beta * gaussian_kl(mu, logvar)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    # -1/2 [log(2 pi) + logvar + (z - mu)^2 / exp(logvar)] per coordinate.
    log_density = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / torch.exp(logvar))
    return log_density.sum(dim=-1)


def iwae_bound(x: Tensor, logits: Tensor, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """K-sample importance-weighted bound log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)."""
    # [BGS15] eq. (8); logsumexp keeps it finite when every log-weight is around -1e4.
    zeros = torch.zeros_like(z)
    log_weights = (
        bernoulli_log_likelihood(x, logits)
        + gaussian_log_density(z, zeros, zeros)
        - gaussian_log_density(z, mu, logvar)
    )  # (K, batch)
    num_samples = log_weights.shape[0]
    return torch.logsumexp(log_weights, dim=0) - math.log(num_samples)


class VAE(nn.Module):
    """Gaussian encoder q(z | x), Bernoulli decoder p(x | z): [KW13] app. C's MLPs, 2 hidden layers, not 1."""

    def __init__(self, x_dim: int = 64, z_dim: int = 2, hidden_dim: int = 256):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Linear(x_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 2 * z_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, x_dim),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (batch, z_dim) each
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)  # Bernoulli logits, (..., x_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.z_dim, device=next(self.parameters()).device)
        return torch.sigmoid(self.decode(z))
