"""What the hidden tests share: reference values in float64, the standard comparisons, and the
form of a FUNCTION problem's visible-check cases."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from assignment.contract import problem
from autograder.feedback import close, expect_close, expect_tensor, failure, show_inputs
from autograder.worker_client import Student, StudentError, WorkerFailure


def problem_of_test_file(path: str) -> str:
    """The problem whose hidden tests the file `test_<name>.py` holds: its name says which."""
    return problem(Path(path).stem.removeprefix("test_")).name


@dataclass(frozen=True)
class Case:
    """A fixed input of a FUNCTION problem's visible check, listed as `VISIBLE_CASES` in its
    hidden-test file. Values are nested lists (float64 tensors) or Python numbers."""
    name: str                                   # what the case is about, shown in failure messages
    args: dict[str, list | float | int]         # positional arguments, in order
    kwargs: dict[str, list | float | int] = field(default_factory=dict)


def as_float64(value):
    return value.double() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


def _key(value) -> object:
    """A hashable stand-in for an argument: a tensor by its dtype, shape and bytes."""
    if isinstance(value, torch.Tensor):
        return value.dtype, tuple(value.shape), value.detach().cpu().numpy().tobytes()
    if isinstance(value, (tuple, list)):
        return tuple(map(_key, value))
    if isinstance(value, dict):
        return tuple((name, _key(item)) for name, item in sorted(value.items()))
    return value


def _once_per_input(compute):
    """Each submission sees the same inputs (derandomized hypothesis, replayed): compute the
    reference's answer to an input once per grading process and hand out copies."""
    cache: dict = {}

    def cached(fn, args: tuple, *rest, **kwargs):
        key = (fn, _key(args), _key(rest), _key(kwargs))
        if key not in cache:
            if len(cache) > 20_000:  # bounded: memory stays flat over any number of submissions
                cache.clear()
            cache[key] = compute(fn, args, *rest, **kwargs)
        result = cache[key]
        return [r.clone() for r in result] if isinstance(result, list) else result.clone()

    return cached


@_once_per_input
def reference_value(fn, args: tuple, kwargs: dict | None = None) -> torch.Tensor:
    """The reference's output, computed in float64 and returned in the inputs' dtype."""
    dtype = args[0].dtype
    result = fn(*map(as_float64, args), **{k: as_float64(v) for k, v in (kwargs or {}).items()})
    return result.to(dtype)


@_once_per_input
def reference_gradients(fn, args: tuple, grad_args: tuple[int, ...], grad_output: torch.Tensor) -> list[torch.Tensor]:
    inputs = [as_float64(a).detach().clone().requires_grad_(i in grad_args) for i, a in enumerate(args)]
    output = fn(*inputs)
    grads = torch.autograd.grad(output, [inputs[i] for i in grad_args], grad_output.double())
    return [g.to(args[0].dtype) for g in grads]


def check_value(student: Student, problem: str, names: tuple[str, ...], args: tuple,
                kwargs: dict | None = None, *, checked: str, reference, accepted=None) -> torch.Tensor:
    """The student's `problem(*args, **kwargs)` equals the reference (or an accepted value)."""
    got = student.call(problem, *args, **(kwargs or {}))["out"]
    expected = reference_value(reference, args, kwargs)
    expect_close(got, [expected, *(accepted or [])], checked=checked, problem=problem,
                 names=names, args=args, kwargs=kwargs)
    return got


def check_gradients(student: Student, problem: str, names: tuple[str, ...], args: tuple,
                    grad_args: tuple[int, ...], *, reference) -> None:
    """Gradients of a random projection of the output reach every differentiable input."""
    output_shape = reference_value(reference, args).shape
    grad_output = torch.linspace(-1.0, 1.5, max(1, output_shape.numel()), dtype=args[0].dtype).reshape(output_shape)
    reply = student.call(problem, *args, grad_args=grad_args, grad_output=grad_output)
    expected = reference_gradients(reference, args, grad_args, grad_output)
    inputs = show_inputs(names, args)
    for index, got, want in zip(grad_args, reply["grads"], expected):
        checked = f"the gradient of {problem} with respect to `{names[index]}`"
        if got is None:
            raise failure(checked, inputs, want, None,
                          "no gradient reaches this argument: is it detached, or replaced by a new tensor?")
        # A gradient is not an output: the catalogue of wrong outputs says nothing about it.
        expect_close(got, want, checked=checked, problem=None, names=names, args=args)


def check_own_gradients(student: Student, problem: str, names: tuple[str, ...], args: tuple, kwargs: dict | None = None,
                        *, step: float = 1e-3) -> None:
    """The gradient of sum(problem(*args)) reaches every argument and is the derivative of the
    student's own function: along a fixed direction per argument, it matches a central
    difference (float64 inputs). A detached term shows; the function's value, and those of the
    parts it builds on, are checked by the caller (error carried forward)."""
    kwargs = kwargs or {}
    reply = student.call(problem, *args, grad_args=tuple(range(len(args))), **kwargs)
    inputs = show_inputs(names, args, kwargs)
    generator = torch.Generator().manual_seed(0)

    def total(shifted: tuple) -> float:
        out = student.call(problem, *shifted, **kwargs)["out"]
        return float(expect_tensor(out, problem, inputs).double().sum())

    at_args = total(args)
    for index, (name, grad) in enumerate(zip(names, reply.get("grads") or [None] * len(args))):
        direction = torch.randn(args[index].shape, generator=generator, dtype=torch.float64)
        ahead, behind = (total(tuple(a + sign * step * direction if i == index else a for i, a in enumerate(args)))
                         for sign in (1, -1))
        numeric = (ahead - behind) / (2 * step)
        if not math.isfinite(numeric) or abs((ahead - at_args) - (at_args - behind)) / step > 0.1 * (1 + abs(numeric)):
            continue  # not finite, or not smooth here (a clamp, a max): the value tests judge such functions
        if grad is None:  # right only where the function does not depend on this argument
            analytic, hint = 0.0, "no gradient reaches this argument: is a term detached, or computed outside torch?"
        else:
            analytic = float((grad.double() * direction).sum()) if grad.shape == args[index].shape else math.nan
            hint = "part of the result does not pass its gradient back: a .detach(), .item(), .data or numpy?"
        if not abs(analytic - numeric) <= 1e-3 + 1e-2 * abs(numeric):
            raise failure(f"the gradient of {problem}(...).sum() with respect to `{name}`, along a fixed direction d "
                          "(autograd against a central difference of your function)", inputs,
                          f"{numeric:.6g} (the change of your function's sum along d)", f"{analytic:.6g}", hint)


def check_dtype_follows(student: Student, problem: str, args: tuple, dtype: torch.dtype, names: tuple[str, ...]) -> torch.Tensor:
    return expect_dtype(student.call(problem, *args)["out"], problem, args, dtype, names)


def expect_dtype(got: object, problem: str, args: tuple, dtype: torch.dtype, names: tuple[str, ...]) -> torch.Tensor:
    got = expect_tensor(got, problem, show_inputs(names, args))
    if got.dtype != dtype:
        raise failure(f"{problem} follows the dtype of its inputs", show_inputs(names, args),
                      f"a {dtype} tensor", got,
                      "a constant or a new tensor created without dtype= (e.g. torch.tensor(...), .float()) changes the dtype.")
    return got


def versions(student: Student, problem: str, args: tuple, *, reference) -> list[torch.Tensor]:
    """The reference's value of `problem(*args)` and, when it differs and is usable, the student's.

    Error carried forward: a problem that builds on another is graded against both, so a
    correct combination of the student's own (wrong) parts keeps its points.
    """
    expected = reference_value(reference, args)
    try:
        own = student.call(problem, *args)["out"]
    except (StudentError, WorkerFailure):
        return [expected]
    usable = type(own) is torch.Tensor and not (own.shape == expected.shape and torch.equal(own, expected))
    return [expected, own.to(expected.dtype)] if usable else [expected]


def own_parts_do_not_combine(combine, *parts: list[torch.Tensor]) -> bool:
    """True when the student's own versions of the parts cannot even be combined (e.g. a KL
    that was not summed): then the student's combining function raising is carried forward."""
    own = [versions_of_part[-1] for versions_of_part in parts]
    if all(len(versions_of_part) == 1 for versions_of_part in parts):
        return False  # every part is correct: an exception is the combining function's own
    try:
        combine(*own)
    except RuntimeError:
        return True
    return False


def combinations(combine, *parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """combine(*choice) for every choice of one version per part, where the shapes broadcast."""
    results = []
    for choice in itertools.product(*parts):
        try:
            results.append(combine(*choice))
        except RuntimeError:  # the student's own part has a shape that does not combine
            pass
    return results


def check_composite(student: Student, problem: str, names: tuple[str, ...], args: tuple, kwargs: dict,
                    *, checked: str, reference, combine, parts) -> torch.Tensor | None:
    """Check a problem built from other problems' functions, with error carried forward.

    `got` passes when it equals the reference or `combine` of any mix of the reference's and
    the student's own parts (`parts()` lists each part's versions). An exception that comes
    only from the student's own parts not combining is carried forward: then None is returned.
    """
    try:
        got = student.call(problem, *args, **kwargs)["out"]
    except StudentError:
        if own_parts_do_not_combine(combine, *parts()):
            return None
        raise
    expected = reference_value(reference, args, kwargs)
    accepted = [expected]
    if not close(got, expected, 1e-4, 1e-4):
        accepted += combinations(combine, *parts())
    expect_close(got, accepted, checked=checked, problem=problem, names=names, args=args, kwargs=kwargs)
    return got
