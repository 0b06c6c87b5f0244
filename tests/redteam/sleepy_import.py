"""An import that sleeps for an hour: only the start timeout can end it."""
import time

import torch.nn.functional as F


def bernoulli_log_likelihood(x, logits):  # never reached: the module never finishes loading
    return (x * logits - F.softplus(logits)).sum(dim=-1)


time.sleep(3600)
