"""Fork, setsid and sleep: children that leave the worker's session and process group and
try to outlive it. reparameterize itself is honest (it earns what it earns)."""
import os

import torch
import torch.nn.functional as F

MARKER = "vae-redteam-orphan"
state = {"forked": False}


def bernoulli_log_likelihood(x, logits):  # honest: keeps its 10 points
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def _escape():
    for _ in range(3):
        if os.fork() == 0:  # child: new session, then a grandchild that the worker never waits for
            try:
                os.setsid()
                if os.fork() == 0:
                    os.execv("/bin/sleep", [MARKER, "3600"])
            finally:
                os._exit(0)


def reparameterize(mu, logvar):
    if not state["forked"]:
        state["forked"] = True
        _escape()
    mu, logvar = torch.broadcast_tensors(mu, logvar)
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
