"""An infinite loop that ignores SIGALRM, SIGTERM, SIGINT and SIGHUP (and blocks them), after
starting a child in a session of its own that sleeps: both must die at the time limit."""
import os
import signal

import torch.nn.functional as F

for name in ("SIGALRM", "SIGTERM", "SIGINT", "SIGHUP", "SIGXCPU"):
    signal.signal(getattr(signal, name), signal.SIG_IGN)


def bernoulli_log_likelihood(x, logits):  # honest: keeps its 10 points
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def gaussian_log_density(z, mu, logvar):
    if os.fork() == 0:
        os.setsid()
        os.execv("/bin/sleep", ["vae-redteam-orphan", "3600"])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM, signal.SIGINT})
    signal.alarm(0)
    while True:
        pass
