"""Exit, crash and garbage: os._exit in gaussian_log_density, a segfault in elbo, NaN results
from gaussian_kl and iwae_bound, and sys.exit at the end of the module (at import)."""
import ctypes
import os
import sys

import torch
import torch.nn.functional as F


def bernoulli_log_likelihood(x, logits):  # honest: keeps its 10 points
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def gaussian_log_density(z, mu, logvar):
    os._exit(0)  # a "successful" exit of the worker, in the middle of a call


def elbo(x, logits, mu, logvar, beta=1.0):
    return ctypes.string_at(0)  # segmentation fault


def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    return torch.full(torch.broadcast_shapes(mu_q.shape, logvar_q.shape)[:-1], float("nan"), dtype=mu_q.dtype)


def iwae_bound(x, logits, z, mu, logvar):
    return torch.full(x.shape[:-1], float("nan"), dtype=x.dtype)


sys.exit(0)  # at import: the grader must still see the functions defined above
