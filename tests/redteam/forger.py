"""Forges the worker's answer to the grader's "load": while its cell runs, it reaches up the
stack to the list of cell errors the worker is building and adds entries that are not text.
A grader that trusted that reply built a record no validator accepts: the grading process
failed on it and the whole class got no JSON, no CSV. (Reaching the worker's frames is
fair game: it is the student's own process; the grader must check what comes back.)"""
import sys

import torch.nn.functional as F


def bernoulli_log_likelihood(x, logits):  # honest, but nothing can be trusted from this worker
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def _forge() -> None:
    frame = sys._getframe(1)
    while frame is not None:
        errors = frame.f_locals.get("errors")
        if isinstance(errors, list) and "cells" in frame.f_locals:
            errors.append([{"not": "a label"}, ["nor", "a", "message"]])
            errors.append(["redteam", 12345])
        frame = frame.f_back


_forge()
