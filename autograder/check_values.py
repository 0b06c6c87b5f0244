"""Generate `public/check_values.json`: the fixed cases of the notebook's visible checks.

For each deterministic problem: a few small float64 inputs (written out below), the
reference output (`solutions.vae`) and the output of every recognised mistake
(`autograder.mistakes`) that differs from it, with its code and hint. The public module
`public/vae_checks.py` reads the file, so it needs neither the reference nor the grader.
For the composite problems (`elbo`, `iwae_bound`) each case also stores the reference value of
every part it is built from, so a check can tell a wrong composite from a right one built on
a wrong part (error carried forward, as the grader does). And the model check's target: the
reference model's held-out ELBO under the grader's budget and the two margins with their
points (`autograder/model_check.py`, `assignment/contract.py`, the hidden tests' marks), so
the notebook's verdict uses the grader's numbers. The JSON is generated, never edited by
hand: run

    python -m autograder.check_values        (or python autograder/check_values.py)

Batch sizes differ from the last dimension in every case, so the axis that is summed
over cannot be confused with the batch axis.
"""
from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `solutions` and `autograder` importable
    sys.path.insert(0, str(ROOT))

from assignment.contract import ELBO_FLOOR_MARGIN, ELBO_MARGIN, PROBLEM_POINTS  # noqa: E402
from autograder import model_check  # noqa: E402
from autograder.mistakes import MISTAKES, mistakes_for  # noqa: E402
from solutions import vae as ref  # noqa: E402

OUTPUT = ROOT / "assignment" / "public" / "check_values.json"
SIGNIFICANT_DIGITS = 8
# Tolerances the visible checks use: a correct float64 answer is far inside (rtol, atol);
# a mistake is named when the answer is within the looser (mistake_rtol, mistake_atol).
TOLERANCE = {"rtol": 1e-6, "atol": 1e-6, "mistake_rtol": 1e-4, "mistake_atol": 1e-5}

Values = list | float  # nested lists become float64 tensors, a float stays a Python float


@dataclass(frozen=True)
class Case:
    name: str                    # what the case is about, shown in failure messages
    args: dict[str, Values]      # positional arguments, in order
    kwargs: dict[str, Values] = field(default_factory=dict)


_X_34 = [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]]
_ELBO_ARGS = {
    "x": _X_34,
    "logits": [[-2.58, 0.69, -3.38, -4.07], [-0.61, -1.8, 0.33, 4.49], [-1.66, -1.25, 0.41, 0.99]],
    "mu": [[-0.18, -0.21], [0.7, 0.52], [-1.03, -0.08]],
    "logvar": [[0.04, -1.05], [0.26, -0.86], [0.97, 0.19]],
}
_IWAE_X = [[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]]
_IWAE_LOGITS = [  # (K=3, batch=2, x_dim=4)
    [[-0.05, 0.14, -1.5, 0.91], [-1.08, -0.29, -2.22, -2.43]],
    [[2.67, -1.01, 0.58, -0.07], [-0.88, -1.02, 1.26, -0.6]],
    [[-0.3, 0.04, 2.35, 1.36], [0.77, -1.13, -2.76, 1.9]],
]
_IWAE_Z = [  # (K=3, batch=2, z_dim=3)
    [[-0.69, -0.33, -0.56], [0.01, -0.38, -0.3]],
    [[-1.38, -0.81, 1.65], [-0.67, -1.05, 0.34]],
    [[1.41, -1.45, -0.21], [-0.63, -1.76, 0.73]],
]
_IWAE_MU = [[0.97, -0.14, 0.54], [0.78, 0.83, 0.92]]
_IWAE_LOGVAR = [[-0.46, 1.51, -1.25], [0.86, 0.49, 0.87]]

CASES: dict[str, tuple[Case, ...]] = {
    "gaussian_kl": (
        Case("prior N(0, I) (the defaults)", {
            "mu_q": [[0.0, 0.3], [-0.27, -0.89], [-0.45, -0.99]],
            "logvar_q": [[0.06, 1.34], [-0.49, -0.62], [0.49, 0.36]],
        }),
        Case("tensor prior arguments", {
            "mu_q": [[0.11, -0.93, -0.03], [0.7, -1.34, -0.46]],
            "logvar_q": [[-1.9, -1.29, -1.84], [-0.24, -1.27, 0.27]],
            "mu_p": [[0.16, -0.19, -2.52], [-0.54, -0.05, 0.11]],
            "logvar_p": [[-1.53, -0.48, -0.98], [-0.81, 1.06, -0.81]],
        }),
        Case("Python float prior arguments", {
            "mu_q": [[-0.03, 0.88, -0.58, -0.11], [0.11, 0.06, -1.23, 0.08]],
            "logvar_q": [[0.64, 2.0, 0.76, 1.2], [0.07, 0.58, 0.19, 0.68]],
        }, {"mu_p": 0.5, "logvar_p": 0.7}),
    ),
    "bernoulli_log_likelihood": (
        Case("binary pixels", {
            "x": _X_34,
            "logits": [[0.41, -0.93, 0.25, -2.37], [-1.16, -0.39, 1.8, 2.29],
                       [-2.65, -1.59, 1.29, -3.98]],
        }),
        Case("grey levels; logits with a leading sample axis (K=4)", {
            "x": [[0.25, 1.0, 0.0], [0.5, 0.75, 1.0]],
            "logits": [[[-0.93, -0.19, 2.51], [1.38, -0.65, -0.74]],
                       [[-0.5, 3.05, -0.86], [-0.61, 0.71, -0.24]],
                       [[-0.39, -2.23, -0.02], [-0.89, 2.33, 1.31]],
                       [[-0.05, 1.34, -0.68], [2.1, -0.01, 1.17]]],
        }),
        Case("extreme logits (must stay finite)", {
            "x": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
            "logits": [[-500.0, 500.0, 2.0], [-500.0, 500.0, -3.0]],
        }),
    ),
    "elbo": (
        Case("beta = 1", _ELBO_ARGS),
        Case("beta = 2", _ELBO_ARGS, {"beta": 2.0}),
    ),
    "gaussian_log_density": (
        Case("one z per example", {
            "z": [[0.09, -0.59], [-0.12, -2.0], [-1.13, 0.36]],
            "mu": [[-2.13, 0.85], [-1.75, 0.76], [-0.85, 0.78]],
            "logvar": [[0.13, -1.54], [1.25, 1.44], [-0.07, -0.27]],
        }),
        Case("z with a leading sample axis (K=2)", {
            "z": [[[-0.16, -0.98], [1.1, -0.54], [-0.05, -0.79]],
                  [[-0.63, -1.28], [1.26, -0.15], [0.97, 0.01]]],
            "mu": [[-2.13, 0.85], [-1.75, 0.76], [-0.85, 0.78]],
            "logvar": [[0.13, -1.54], [1.25, 1.44], [-0.07, -0.27]],
        }),
    ),
    "iwae_bound": (
        Case("K = 3", {"x": _IWAE_X, "logits": _IWAE_LOGITS, "z": _IWAE_Z,
                       "mu": _IWAE_MU, "logvar": _IWAE_LOGVAR}),
        Case("K = 1 (the single-sample ELBO)", {
            "x": _IWAE_X, "logits": _IWAE_LOGITS[:1], "z": _IWAE_Z[:1],
            "mu": _IWAE_MU, "logvar": _IWAE_LOGVAR}),
        Case("log-weights around -1e4 (must stay finite)", {
            "x": [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]],
            "logits": [[[-10000.0, 10000.0, 1.5], [5000.0, -5000.0, 2.0]],
                       [[-10000.5, 9999.0, 1.0], [5000.0, -5001.0, 0.5]]],
            "z": _IWAE_Z[:2], "mu": _IWAE_MU, "logvar": _IWAE_LOGVAR}),
    ),
}

# The parts each composite problem is built from: (problem, its arguments). An argument is a
# name of the case's arguments, or "zeros" for zeros shaped like z (the prior N(0, I)).
PARTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "elbo": (("bernoulli_log_likelihood", ("x", "logits")), ("gaussian_kl", ("mu", "logvar"))),
    "iwae_bound": (("bernoulli_log_likelihood", ("x", "logits")),
                   ("gaussian_log_density", ("z", "zeros", "zeros")),
                   ("gaussian_log_density", ("z", "mu", "logvar"))),
}

REFERENCE: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_kl": ref.gaussian_kl,
    "bernoulli_log_likelihood": ref.bernoulli_log_likelihood,
    "elbo": ref.elbo,
    "gaussian_log_density": ref.gaussian_log_density,
    "iwae_bound": ref.iwae_bound,
}


def _rounded(value: object) -> object:
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _materialise(values: dict[str, Values]) -> dict[str, torch.Tensor | float]:
    return {name: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else float(v)
            for name, v in values.items()}


def _output(fn: Callable[..., torch.Tensor], args: tuple, kwargs: dict) -> torch.Tensor | None:
    try:
        out = fn(*args, **kwargs)
    except Exception:  # a mistake that does not apply to these inputs
        return None
    return out.detach() if isinstance(out, torch.Tensor) else None


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(
        a, b, rtol=TOLERANCE["mistake_rtol"], atol=TOLERANCE["mistake_atol"])


def _part_values(problem: str, named: dict[str, torch.Tensor | float]) -> list[dict]:
    """The reference value of each part of a composite problem on the case's arguments."""
    parts = []
    for part, names in PARTS.get(problem, ()):
        args = [torch.zeros_like(named["z"]) if name == "zeros" else named[name] for name in names]
        parts.append({"problem": part, "args": list(names),
                      "expected": _rounded(REFERENCE[part](*args).tolist())})
    return parts


def _case_values(problem: str, case: Case) -> dict:
    args = tuple(_materialise(case.args).values())
    kwargs = _materialise(case.kwargs)
    expected = REFERENCE[problem](*args, **kwargs)
    assert torch.isfinite(expected).all(), f"{problem}, {case.name}: reference not finite"
    shown: list[torch.Tensor] = [expected]
    mistakes, nonfinite = [], None
    for mistake in mistakes_for(problem):
        wrong = None if mistake.wrong is None else _output(mistake.wrong, args, kwargs)
        if wrong is None:
            continue
        if not torch.isfinite(wrong).all():
            explains = mistake.nonfinite_when and mistake.nonfinite_when(*args, **kwargs)
            if nonfinite is None and explains:
                nonfinite = mistake.code
            continue
        if any(_close(wrong, earlier) for earlier in shown):
            continue  # indistinguishable on this case from the answer or an earlier mistake
        shown.append(wrong)
        mistakes.append({"code": mistake.code, "hint": mistake.hint,
                         "output": _rounded(wrong.tolist())})
    values = {
        "name": case.name,
        "args": {k: _rounded(v) if isinstance(v, list) else v for k, v in case.args.items()},
        "kwargs": dict(case.kwargs),
        "expected": _rounded(expected.tolist()),
        "mistakes": mistakes,
        "nonfinite_mistake": nonfinite,
    }
    if problem in PARTS:
        values["parts"] = _part_values(problem, _materialise(case.args))
    return values


def _points(test: str, tests: Path = ROOT / "autograder" / "hidden_tests" / "test_VAE.py") -> int:
    """The points the hidden test `test` carries: n of its @pytest.mark.points(n), read from
    the source (importing a test module outside pytest would warn about the unknown mark)."""
    for node in ast.parse(tests.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == test:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "pytest.mark.points":
                    return ast.literal_eval(decorator.args[0])
    raise ValueError(f"{tests}: no test {test} with @pytest.mark.points(n)")


def model_target() -> dict:
    """What the model check compares a trained model with, and what each margin is worth.

    The reference's held-out ELBO is rounded to 0.01 nats: it differs across CPUs in its last
    digits, and the notebook's verdict is an estimate."""
    budget = model_check.BUDGET
    return {
        "reference_heldout_elbo": round(model_check.reference_heldout_elbo(), 2),
        "full_margin": ELBO_MARGIN, "full_points": _points("test_heldout_elbo_close_to_reference")
        + _points("test_heldout_elbo_reasonable"),
        "partial_margin": ELBO_FLOOR_MARGIN, "partial_points": _points("test_heldout_elbo_reasonable"),
        "steps": budget.steps, "batch_size": budget.batch_size, "lr": budget.lr, "seed": budget.seed,
        "model_kwargs": dict(model_check.MODEL_KWARGS),
    }


def build_check_values() -> dict:
    """The content of check_values.json, computed from the reference and the mistakes."""
    return {
        "comment": "Generated by autograder/check_values.py from the reference solution; "
                   "do not edit by hand.",
        "tolerance": dict(TOLERANCE),
        "hints": {m.code: m.hint for m in MISTAKES},
        "points": dict(PROBLEM_POINTS),
        "problems": {problem: [_case_values(problem, case) for case in cases]
                     for problem, cases in CASES.items()},
        "model": model_target(),
    }


def _pretty_json(values: dict) -> str:
    """Indented JSON with every innermost list of numbers kept on one line."""
    text = json.dumps(values, indent=1)
    numbers = re.compile(r"\[\s*([-+0-9.eE]+(?:,\s*[-+0-9.eE]+)*)\s*\]")
    return numbers.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1))) + "]", text) + "\n"


def main() -> None:
    values = build_check_values()
    OUTPUT.write_text(_pretty_json(values))
    count = sum(len(cases) for cases in values["problems"].values())
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {count} cases")


if __name__ == "__main__":
    main()
