"""Writes outside its temporary folder: a canary folder in /tmp, the project, the untrusted
code, site-packages (a .pth file would run in every later Python), the grader's working
folder and its open output files found through /proc. gaussian_kl is otherwise honest."""
import os
import sys

import torch
import torch.nn.functional as F

state = {"done": False}


def bernoulli_log_likelihood(x, logits):  # honest: keeps its 10 points
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def _ancestors():
    """The grading process and the one that started it (only those: this runs for real without
    the sandbox, and their working folder is the test's)."""
    pid, seen = os.getppid(), []
    while pid > 1 and len(seen) < 2:
        seen.append(pid)
        try:
            with open(f"/proc/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return seen


def _attempt(path, mode="w"):
    try:
        with open(path, mode) as target:
            target.write("PWNED by redteam/writer.py\n")
        return path
    except OSError:
        return None


def _attack():
    worker = os.path.abspath(sys.argv[0])
    project = os.path.dirname(os.path.dirname(os.path.dirname(worker)))
    targets = ["/tmp/vae-redteam-canary/redteam-pwned", os.path.join(project, "redteam-pwned"),
               os.path.join(os.path.dirname(worker), "redteam-pwned"),
               *(os.path.join(site, "redteam-pwned.pth") for site in sys.argv[4:5])]
    for pid in _ancestors():
        targets.append(f"/proc/{pid}/cwd/redteam-pwned")
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            names = []
        for name in names:
            try:
                real = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if "redteam" in real and os.path.isfile(real):
                targets.append(f"/proc/{pid}/fd/{name}")
    written = [t for t in targets if _attempt(t, "a") is not None]
    own = _attempt(os.path.join(os.getcwd(), "own-scratch-file"))  # its own folder: allowed
    print(f"REDTEAM-WROTE outside: {written or 'nothing'}; own folder: {bool(own)}")


def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    if not state["done"]:
        state["done"] = True
        _attack()
    logvar_p = torch.as_tensor(logvar_p)
    kl = 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)
    return kl.sum(dim=-1)
