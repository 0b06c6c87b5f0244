"""Failure messages that teach: what was checked, the input, expected vs got, the likely mistake."""
from __future__ import annotations

import torch

from autograder import mistakes

PREVIEW_ELEMENTS = 6


def show(value: object) -> str:
    """A short, readable rendering of a tensor (its first few entries, shape and dtype)."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1)
        entries = ", ".join(f"{v:.4g}" for v in flat[:PREVIEW_ELEMENTS].tolist())
        more = ", ..." if flat.numel() > PREVIEW_ELEMENTS else ""
        dtype = str(value.dtype).removeprefix("torch.")
        return f"tensor([{entries}{more}], shape={tuple(value.shape)}, {dtype})"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(show(v) for v in value) + ")"
    return repr(value)


def show_inputs(names: tuple[str, ...], args: tuple, kwargs: dict | None = None) -> str:
    pairs = [f"{name}={show(arg)}" for name, arg in zip(names, args)]
    pairs += [f"{name}={show(arg)}" for name, arg in (kwargs or {}).items()]
    return "\n  ".join(pairs)


class GradingFailure(AssertionError):
    """A failed check; `mistake` is the code of the recognised mistake, if any."""

    def __init__(self, message: str, mistake: str | None = None):
        super().__init__(message)
        self.mistake = mistake


def failure(checked: str, inputs: str = "", expected: object = None, got: object = None,
            hint: str | None = None, mistake: "mistakes.Mistake | None" = None) -> GradingFailure:
    hint = mistake.hint if mistake else hint
    lines = [f"Checked: {checked}"]
    if inputs:
        lines.append(f"Input:\n  {inputs}")
    if expected is not None:
        lines.append(f"Expected: {show(expected)}")
    if got is not None or expected is not None:
        lines.append(f"Got:      {show(got)}")
    if hint:
        lines.append(f"Likely mistake: {hint}")
    return GradingFailure("\n".join(lines), mistake.code if mistake else None)


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol): float32 allows rounding of a float32 computation, float64 much less."""
    return (1e-7, 1e-9) if dtype == torch.float64 else (1e-4, 1e-4)


def close(got: object, expected: torch.Tensor, rtol: float, atol: float) -> bool:
    if type(got) is not torch.Tensor or got.shape != expected.shape:
        return False
    # Equal infinities (and NaN where NaN is accepted) match: a result carried forward
    # from the student's own non-finite part is still the right combination.
    return bool(torch.isclose(got.double(), expected.double(), rtol=rtol, atol=atol, equal_nan=True).all())


def expect_tensor(got: object, what: str, inputs: str) -> torch.Tensor:
    if type(got) is not torch.Tensor:
        raise failure(f"{what} returns a torch.Tensor", inputs, got=got)
    return got


def expect_close(got: object, expected: torch.Tensor | list[torch.Tensor], *, checked: str,
                 problem: str | None, names: tuple[str, ...], args: tuple, kwargs: dict | None = None,
                 rtol: float | None = None, atol: float | None = None) -> None:
    """Pass when `got` matches the expected value (or any of several accepted ones); on a
    failure, name the known mistake of `problem` that `got` matches (None: do not look)."""
    candidates = expected if isinstance(expected, list) else [expected]
    default_rtol, default_atol = tolerance(candidates[0].dtype)
    rtol, atol = rtol or default_rtol, atol or default_atol
    if any(close(got, candidate, rtol, atol) for candidate in candidates):
        return
    inputs = show_inputs(names, args, kwargs)
    if type(got) is not torch.Tensor:
        raise failure(checked, inputs, candidates[0], got, "the function must return a torch.Tensor.")
    hint = None
    if got.shape != candidates[0].shape:
        hint = f"the result should have shape {tuple(candidates[0].shape)}, not {tuple(got.shape)}."
    recognised = mistakes.recognise(problem, got, args, kwargs or {}) if problem is not None else None
    raise failure(checked, inputs, candidates[0], got, hint, recognised)
