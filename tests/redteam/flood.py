"""A memory bomb of several GiB in reparameterize; hundreds of MB printed by gaussian_kl."""
import sys

import torch
import torch.nn.functional as F

state = {"bombed": False, "flooded": False}


def bernoulli_log_likelihood(x, logits):  # honest: keeps its 10 points
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def reparameterize(mu, logvar):
    if not state["bombed"]:  # once per worker: 256 MiB at a time until the memory runs out
        state["bombed"] = True
        chunks = [torch.ones(2**26)]  # the first 256 MiB really written
        while True:
            chunks.append(torch.empty(2**26))  # then address space, 256 MiB at a time
    hoard = [bytearray(6 * 2**30)]  # 6 GiB at once
    return torch.empty(2**31) + hoard[0][0]  # 8 GiB of float32


def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    if not state["flooded"]:  # once per worker: 300 MB of output
        state["flooded"] = True
        line = "flood " * 1000 + "\n"
        for _ in range(300_000_000 // len(line)):
            sys.stdout.write(line)
        sys.stdout.flush()
    return torch.zeros(torch.broadcast_shapes(mu_q.shape, logvar_q.shape)[:-1], dtype=mu_q.dtype)
