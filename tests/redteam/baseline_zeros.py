"""Not an attack: the control. Every function returns zeros of the right shape, honestly;
what this earns is what an attack that returns zeros may earn."""
import torch


def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    return torch.zeros(torch.broadcast_shapes(mu_q.shape, logvar_q.shape)[:-1], dtype=mu_q.dtype)


def reparameterize(mu, logvar):
    return torch.zeros(torch.broadcast_shapes(mu.shape, logvar.shape), dtype=mu.dtype)


def iwae_bound(x, logits, z, mu, logvar):
    return torch.zeros(x.shape[:-1], dtype=x.dtype)
