"""Looks for the reference, the hidden tests and other students' submissions: by importing
the project's packages (also through the editable-install finder in site-packages), by
guessing the project folder from the worker's path, by walking the disk and through /proc.
With the reference found, gaussian_kl would score full marks; without it, zeros."""
import glob
import os
import sys
import time

import torch
import torch.nn.functional as F

state = {}


def bernoulli_log_likelihood(x, logits):  # honest: keeps its 10 points
    return (x * logits - F.softplus(logits)).sum(dim=-1)


def _search():
    found = {"reference": [], "hidden_tests": [], "submissions": [], "processes": []}
    try:
        import solutions.vae as reference  # noqa: F401
        found["reference"].append(reference.__file__)
    except Exception:  # noqa: BLE001
        pass
    for finder in glob.glob(os.path.join(sys.argv[4] if len(sys.argv) > 4 else "/", "__editable__*finder.py")):
        try:
            namespace = {"__name__": "redteam_finder"}
            exec(open(finder).read(), namespace)
            namespace["install"]()
            import solutions.vae as reference
            found["reference"].append(reference.__file__)
        except Exception:  # noqa: BLE001
            pass
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0]))))
    for path in (os.path.join(project, "solutions", "vae.py"), os.path.join(project, "autograder", "hidden_tests")):
        if os.path.exists(path):
            found["reference" if path.endswith(".py") else "hidden_tests"].append(path)
    deadline = time.monotonic() + 3
    for root, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
        if time.monotonic() > deadline:
            break
        base = os.path.basename(root)
        if base == "solutions" and "vae.py" in files:
            found["reference"].append(os.path.join(root, "vae.py"))
        if base == "hidden_tests":
            found["hidden_tests"] += [os.path.join(root, f) for f in files if f.endswith(".py")]
        if "redteam-submissions" in root:
            found["submissions"] += [os.path.join(root, f) for f in files if f.endswith((".py", ".ipynb"))]
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) not in (os.getpid(), 1):
            try:
                found["processes"].append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")[:80].decode())
            except OSError:
                pass
    for key in found:
        found[key] = sorted(set(found[key]))
    return found


def _reference_kl():
    for path in state["found"]["reference"]:
        try:
            namespace = {"__name__": "stolen"}
            exec(compile(open(path).read(), path, "exec"), namespace)
            return namespace["gaussian_kl"]
        except Exception:  # noqa: BLE001
            pass
    return None


def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    if "found" not in state:
        state["found"] = _search()
        state["stolen"] = _reference_kl()
    found = state["found"]
    summary = {key: len(value) for key, value in found.items()}
    if not any(found[key] for key in ("reference", "hidden_tests", "submissions")):
        print(f"REDTEAM-FOUND nothing {summary}")
    else:
        print(f"REDTEAM-FOUND {summary}: {found['reference'][:2]} {found['hidden_tests'][:2]} {found['submissions'][:2]}")
    if state["stolen"] is not None:
        return state["stolen"](mu_q, logvar_q, mu_p, logvar_p)
    return torch.zeros(torch.broadcast_shapes(mu_q.shape, logvar_q.shape)[:-1], dtype=mu_q.dtype)
