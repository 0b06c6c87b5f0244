"""Recognised mistakes: which catalogued mistake explains a student's result.

The mistakes are written once, in the catalogue (`autograder/catalogue.py`): each entry with a
`Hint` is the mistake's own code (a patch of the reference), its problem and the sentence the
feedback shows. Here they are gathered by code. A FUNCTION problem's mistake (the contract's
kind) is recognised by running that mistaken function on the student's input and comparing
its output with the student's; the hidden tests of a SAMPLER or MODEL problem recognise its
mistakes themselves (statistics, structure) and look the hint up by code with `hint`.

The evidence for each mistake is in ANCHORS.md ("Realistic mistakes seen in public code").
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from assignment.contract import FUNCTION, PROBLEMS, problem as contract_problem
from autograder import catalogue
from solutions import vae as ref


@dataclass(frozen=True)
class Mistake:
    code: str                                  # stable id, snake_case, e.g. "kl_missing_half"
    problem: str                               # one of the contract's problem names
    hint: str                                  # one teaching sentence for the student
    variants: tuple[catalogue.Variant, ...]    # the catalogue's entries that make this mistake
    nonfinite_when: Callable[..., bool] | None = None  # see catalogue.Hint


def _gathered() -> tuple[Mistake, ...]:
    """One Mistake per hint code, in the catalogue's order (its first entry's place)."""
    by_code: dict[str, list[catalogue.Variant]] = {}
    for variant in catalogue.MISTAKES:
        if variant.hint is not None:
            by_code.setdefault(variant.hint.code, []).append(variant)
    mistakes = []
    for code, variants in by_code.items():
        first = variants[0]
        differing = [v.name for v in variants if (v.problem, v.hint) != (first.problem, first.hint)]
        if differing:
            raise ValueError(f"catalogue: {differing} name the hint {code!r} of {first.name} with "
                             "another text or problem: define the Hint once and share it")
        mistakes.append(Mistake(code, first.problem, first.hint.text, tuple(variants),
                                first.hint.nonfinite_when))
    return tuple(mistakes)


MISTAKES: tuple[Mistake, ...] = _gathered()
_BY_CODE = {mistake.code: mistake for mistake in MISTAKES}


def hint(code: str) -> Mistake:
    """The recognised mistake `code` (KeyError naming the known codes when there is none)."""
    if code not in _BY_CODE:
        raise KeyError(f"no catalogued mistake has the hint code {code!r}; known: {sorted(_BY_CODE)}")
    return _BY_CODE[code]


def mistakes_for(problem: str) -> tuple[Mistake, ...]:
    """The recognised mistakes of one problem, in the order `recognise` tries them."""
    contract_problem(problem)  # ValueError for a name that is not a contract problem
    return tuple(m for m in MISTAKES if m.problem == problem)


@functools.cache
def recognised_by_output(problem: str) -> bool:
    """True for a FUNCTION problem: its mistakes are recognised by their output."""
    return problem in PROBLEMS and contract_problem(problem).kind == FUNCTION


def _close(a: Tensor, b: Tensor, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False)


def evaluate(fn: Callable[..., Tensor], args: tuple, kwargs: dict) -> Tensor | None:
    """fn(*args, **kwargs) as a detached float64 tensor, or None where it fails."""
    try:
        with torch.no_grad():
            out = fn(*args, **kwargs)
    except Exception:  # a mistake that does not apply to these arguments
        return None
    return out.detach().double().cpu() if isinstance(out, Tensor) else None


def recognise(problem: str, got: Tensor, args: tuple, kwargs: dict, *,
              rtol: float = 1e-4, atol: float = 1e-5) -> Mistake | None:
    """The first mistake of `problem` whose own code, run on (args, kwargs), gives `got`, else None.

    A mistake whose output equals the reference's on these arguments is skipped (it cannot
    be told apart from a correct answer), and so is the case of a correct `got`.
    """
    candidates = mistakes_for(problem)
    if not recognised_by_output(problem) or not isinstance(got, Tensor):
        return None
    got64 = got.detach().double().cpu()
    expected = evaluate(getattr(ref, problem), args, kwargs)
    if expected is None or _close(got64, expected, rtol, atol):
        return None
    for mistake in candidates:
        for variant in mistake.variants:
            wrong = evaluate(catalogue.patched_function(variant), args, kwargs)
            if wrong is None or _close(wrong, expected, rtol, atol):
                continue
            if _close(wrong, got64, rtol, atol):
                return mistake
    if got64.shape == expected.shape and bool((~got64.isfinite() & expected.isfinite()).any()):
        for mistake in candidates:
            if mistake.nonfinite_when is not None and mistake.nonfinite_when(*args, **kwargs):
                return mistake
    return None
