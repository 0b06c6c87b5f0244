"""Generate `public/check_values.json`: what the notebook's visible checks need, from the grader.

The public module `public/vae_checks.py` reads the file, so it needs neither the reference nor
the grader. It holds the contract's problems in order (names, points, kinds, check functions,
what the model's training uses: `assignment/contract.py`); for each FUNCTION problem the fixed cases of
its visible check, listed as `VISIBLE_CASES` in its hidden-test file, with the reference's
output (`solutions.vae`) and the output of every catalogued mistake that differs from it, run
from the mistake's own code (`autograder/catalogue.py`), with its code and hint. For a
composite problem (its hidden-test file's `VISIBLE_PARTS`, e.g. `elbo`) each case also stores
the reference value of every part it is built from, so a check can tell a wrong composite
from a right one built on a wrong part (error carried forward, as the grader does). And the
model check's target: the reference model's held-out ELBO under the grader's budget and the
two margins with their points (`autograder/model_check.py`, the hidden tests' marks), so the
notebook's verdict uses the grader's numbers. The JSON is generated, never edited by hand:
after changing a problem, run

    python -m autograder.check_values        (or python autograder/check_values.py)

and `python -m autograder.check_values --check` exits 1 when the file is stale (so does
`vae-assignment validate`).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `solutions` and `autograder` importable
    sys.path.insert(0, str(ROOT))

from assignment.contract import CONTRACT, ELBO_FLOOR_MARGIN, ELBO_MARGIN, FUNCTION  # noqa: E402
from autograder import model_check  # noqa: E402
from autograder.catalogue import patched_function  # noqa: E402
from autograder.hidden_tests.support import Case  # noqa: E402
from autograder.mistakes import MISTAKES, mistakes_for  # noqa: E402
from solutions import vae as ref  # noqa: E402

OUTPUT = ROOT / "assignment" / "public" / "check_values.json"
HIDDEN_TESTS = ROOT / "autograder" / "hidden_tests"
SIGNIFICANT_DIGITS = 8
# Tolerances the visible checks use: a correct float64 answer is far inside (rtol, atol);
# a mistake is named when the answer is within the looser (mistake_rtol, mistake_atol).
TOLERANCE = {"rtol": 1e-6, "atol": 1e-6, "mistake_rtol": 1e-4, "mistake_atol": 1e-5}

Parts = tuple[tuple[str, tuple[str, ...]], ...]


def hidden_test_module(problem: str) -> types.ModuleType:
    """The hidden-test file of `problem`, loaded apart (a module of its own, not in sys.modules).
    Imported as autograder.hidden_tests.test_<problem>, it would keep the hypothesis settings of
    that moment, since @given reads them when it decorates: outside the hidden tests' own pytest
    run, before their conftest.py loads the grading profile, the defaults (random examples, 100
    of them, health checks), and a grading run in the same process would then run those."""
    path = HIDDEN_TESTS / f"test_{problem}.py"
    spec = importlib.util.spec_from_file_location(f"_hidden_tests_of_{problem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def visible_cases(problem: str) -> tuple[tuple[Case, ...], Parts]:
    """The fixed cases and the carried-forward parts of a FUNCTION problem's visible check,
    from its hidden-test file (VISIBLE_CASES, VISIBLE_PARTS)."""
    module = hidden_test_module(problem)
    cases = getattr(module, "VISIBLE_CASES", ())
    if not cases or not all(isinstance(case, Case) for case in cases):
        raise ValueError(f"{HIDDEN_TESTS / f'test_{problem}.py'}: a FUNCTION problem's hidden-test file "
                         "lists its visible check's fixed cases as VISIBLE_CASES = (Case(...), ...)")
    return tuple(cases), tuple(getattr(module, "VISIBLE_PARTS", ()))


def function_problems() -> list[str]:
    return [entry.name for entry in CONTRACT if entry.kind == FUNCTION]


def _rounded(value: object) -> object:
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _materialise(values: dict[str, list | float | int]) -> dict[str, torch.Tensor | float | int]:
    """Nested lists as float64 tensors; a number (e.g. beta = 2.0, dim = 1) as it is written."""
    return {name: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v
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


def _part_values(parts: Parts, named: dict[str, torch.Tensor | float]) -> list[dict]:
    """The reference value of each part of a composite problem on the case's arguments."""
    values = []
    for part, names in parts:
        args = [torch.zeros_like(named["z"]) if name == "zeros" else named[name] for name in names]
        values.append({"problem": part, "args": list(names),
                       "expected": _rounded(getattr(ref, part)(*args).tolist())})
    return values


def _mistake_outputs(problem: str, args: tuple, kwargs: dict) -> list[tuple[str, str, torch.Tensor | None]]:
    """(code, hint, output or None where it fails) of each catalogued mistake of `problem`."""
    return [(mistake.code, mistake.hint, _output(patched_function(variant), args, kwargs))
            for mistake in mistakes_for(problem) for variant in mistake.variants]


def _case_values(problem: str, case: Case, parts: Parts) -> dict:
    args = tuple(_materialise(case.args).values())
    kwargs = _materialise(case.kwargs)
    expected = getattr(ref, problem)(*args, **kwargs)
    assert torch.isfinite(expected).all(), f"{problem}, {case.name}: reference not finite"
    shown: list[torch.Tensor] = [expected]
    mistakes, nonfinite = [], None
    nonfinite_when = {mistake.code: mistake.nonfinite_when for mistake in mistakes_for(problem)}
    for code, hint, wrong in _mistake_outputs(problem, args, kwargs):
        if wrong is None:
            continue
        if not torch.isfinite(wrong).all():
            explains = nonfinite_when[code] and nonfinite_when[code](*args, **kwargs)
            if nonfinite is None and explains:
                nonfinite = code
            continue
        if any(_close(wrong, earlier) for earlier in shown):
            continue  # indistinguishable on this case from the answer or an earlier mistake
        shown.append(wrong)
        mistakes.append({"code": code, "hint": hint, "output": _rounded(wrong.tolist())})
    values = {
        "name": case.name,
        "args": {k: _rounded(v) if isinstance(v, list) else v for k, v in case.args.items()},
        "kwargs": dict(case.kwargs),
        "expected": _rounded(expected.tolist()),
        "mistakes": mistakes,
        "nonfinite_mistake": nonfinite,
    }
    if parts:
        values["parts"] = _part_values(parts, _materialise(case.args))
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


def _problem_cases(problem: str) -> list[dict]:
    cases, parts = visible_cases(problem)
    return [_case_values(problem, case, parts) for case in cases]


def build_check_values() -> dict:
    """The content of check_values.json, computed from the contract, the reference, the hidden
    tests' cases and the catalogue's mistakes."""
    return {
        "comment": "Generated by autograder/check_values.py from the reference solution; "
                   "do not edit by hand.",
        "tolerance": dict(TOLERANCE),
        "hints": {m.code: m.hint for m in MISTAKES},
        "contract": [{"name": entry.name, "points": entry.points, "kind": entry.kind,
                      "check_function": entry.check_function, "trains_model": entry.trains_model}
                     for entry in CONTRACT],
        "problems": {problem: _problem_cases(problem) for problem in function_problems()},
        "model": model_target(),
    }


def stale_reason(stored: Path = OUTPUT) -> str | None:
    """Why the stored check_values.json is not what the grader would generate now, or None.
    The reference model's held-out ELBO may differ across CPUs in its last digits: it counts
    only when it is 0.1 nats off."""
    try:
        have = json.loads(stored.read_text())
    except (OSError, ValueError) as error:
        return f"{stored} cannot be read ({error})"
    want = build_check_values()
    have_elbo = have.get("model", {}).pop("reference_heldout_elbo", None)
    want_elbo = want["model"].pop("reference_heldout_elbo")
    if have != want:
        changed = sorted(key for key in {*have, *want} if have.get(key) != want.get(key))
        return f"{stored} is stale (it differs in {', '.join(changed)})"
    if not isinstance(have_elbo, (int, float)) or abs(have_elbo - want_elbo) >= 0.1:
        return f"{stored} is stale (the reference model's held-out ELBO: {have_elbo}, now {want_elbo})"
    return None


def _pretty_json(values: dict) -> str:
    """Indented JSON with every innermost list of numbers kept on one line."""
    text = json.dumps(values, indent=1)
    numbers = re.compile(r"\[\s*([-+0-9.eE]+(?:,\s*[-+0-9.eE]+)*)\s*\]")
    return numbers.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1))) + "]", text) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.check_values", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only say whether the file is up to date (exit 1 if not)")
    if parser.parse_args(argv).check:
        reason = stale_reason()
        print(reason or f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 1 if reason else 0
    values = build_check_values()
    OUTPUT.write_text(_pretty_json(values))
    count = sum(len(cases) for cases in values["problems"].values())
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {count} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
