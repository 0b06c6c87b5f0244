"""The similarity report's class: independently written solutions and disguised copies of some.

The reference notebook and every correct variant of autograder/catalogue.py, each written into
the release notebook on its own, so that a submission holds only its author's code; plus
disguised copies of some of them, as a student hides copying: names renamed, functions and
methods reordered, comments and blank lines changed, an extra print, handed in as a .py file.
For tests/test_similarity.py and benchmarks/calibrate_similarity.py.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

from assignment.contract import PROBLEMS
from autograder import similarity
from autograder.catalogue import CORRECT, top_level_spans
from autograder.handed_in import cell_by_id, reference_notebook
from benchmarks.make_class import patched_notebook

RENAMES = {"mu": "m", "logvar": "log_var", "mu_q": "mean_q", "logvar_q": "lv_q", "kl": "divergence",
           "std": "sigma", "eps": "noise", "logits": "scores", "x": "inputs", "z": "code",
           "h": "hidden", "log_w": "log_weights", "hidden_dim": "width", "z_dim": "latent"}
DISGUISED = ("reference", "correct_torch_distributions", "correct_with_prints_and_helpers",
             "correct_vae_conv_encoder")


def _without_comments(code: str) -> str:
    lines = [re.sub(r"\s+#[^\"']*$", "", line) for line in code.split("\n")]
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _methods_reversed(code: str) -> str:
    """The VAE class with its methods in reverse order."""
    spans = {name: span for name, span in top_level_spans(code).items() if name.startswith("VAE.")}
    if not spans:
        return code
    lines = code.split("\n")
    ordered = sorted(spans.values())
    blocks = ["\n".join(lines[start - 1:end]) for start, end, _ in ordered]
    first, last = ordered[0][0], ordered[-1][1]
    return "\n".join(lines[:first - 1] + ["\n\n".join(reversed(blocks))] + lines[last:])


def disguise(cells: list[str]) -> str:
    """A .py file of the cells' code as a copier hides it, after the release's imports (given
    code, so boilerplate) as a notebook exported to a script has them."""
    renamed = [re.sub(r"\b(" + "|".join(RENAMES) + r")\b", lambda m: RENAMES[m.group(1)], _without_comments(c))
               for c in cells]
    reordered = [_methods_reversed(c) for c in reversed(renamed)]  # functions and methods reordered
    code = "\n\n\n\n".join("# my own work\n" + c.replace("\n\n", "\n") for c in reordered)
    code = re.sub(r"^( +)return ", r'\1print("returning")\n\1return ', code, count=1, flags=re.M)  # an extra print
    code = cell_by_id(similarity.release_notebook(), "setup").source + "\n\n\n" + code
    ast.parse(code)
    return code


def _own_cells(nb) -> list[str]:
    return [cell_by_id(nb, name).source for name in PROBLEMS]


def write_class(folder: Path, disguised: tuple[str, ...] = DISGUISED) -> Path:
    """The independent notebooks and the disguised copies (`copy_of_<name>.py`) in `folder`."""
    release = similarity.release_notebook()
    notebooks = {"reference": reference_notebook(release)}
    notebooks.update({v.name: patched_notebook(release, v) for v in CORRECT})
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    for name in disguised:
        (folder / f"copy_of_{name}.py").write_text(disguise(_own_cells(notebooks[name])))
    return folder


def independent(pair: tuple[str, str]) -> bool:
    return not any(student.startswith("copy_of_") for student in pair)
