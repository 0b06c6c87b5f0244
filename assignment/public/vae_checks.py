"""Visible checks of the VAE assignment: the quick tests the notebook's check cells call.

Each `check_*` function tries your code on a few small inputs (stored in
`check_values.json` beside this file) and on a few properties every correct answer has.
When all pass it prints one line; otherwise it raises CheckFailed saying in a few lines what
was checked, on which input, what was expected, what your code gave and, when the answer
matches a known mistake, the likely mistake. Passing them is necessary, not sufficient:
the grader runs more tests (other shapes, float32, broadcasting, gradients).

`elbo` and `iwae_bound` are built from your other functions. Like the grader, their checks
accept an answer that is right given your own parts: when a part is wrong, they check the
composite with the part's expected values in its place and tell you which problem to fix.

`check_all(globals())` runs every check and sums up where you stand before you submit;
`model_verdict` compares your trained model with the grader's target.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import torch
from torch import Tensor

VALUES_PATH = Path(__file__).resolve().with_name("check_values.json")
_MISSING = object()
_LINE_WIDTH = 100  # a printed input or value longer than this is cut


class CheckFailed(AssertionError):
    """A failed check. Its message is the whole story, so Jupyter shows only the message
    (IPython renders `_render_traceback_`), not the checker's own frames."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mCheckFailed\x1b[0m: {str(self)}"]


# ----------------------------------------------------------------- shared helpers
@functools.cache
def _values() -> dict:
    return json.loads(VALUES_PATH.read_text())


def _hint(code: str) -> str:
    return _values()["hints"][code]


def _contract() -> dict[str, dict]:
    """The problems in the notebook's order: name -> name, points, kind, check_function, trains_model."""
    return {entry["name"]: entry for entry in _values()["contract"]}


def _problem_label(problem: str) -> str:
    """E.g. "Problem 1 (gaussian_kl)", numbered in the notebook's order."""
    return f"Problem {list(_contract()).index(problem) + 1} ({problem})"


def _fmt(value: object) -> str:
    """Numbers with 4 decimals, on one line, cut after _LINE_WIDTH characters."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().double().tolist()
    if isinstance(value, list):
        text = "[" + ", ".join(_fmt(v) for v in value) + "]"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = f"{value:.4f}"
    else:
        text = repr(value)
    return text if len(text) <= _LINE_WIDTH else text[:_LINE_WIDTH - 5] + " ...]"


def _inputs(named: dict[str, object]) -> str:
    lines = []
    for name, value in named.items():
        shape = f" (shape {tuple(value.shape)})" if isinstance(value, Tensor) else ""
        lines.append(f"{name}{shape} = {_fmt(value)}")
    return "Input: " + "\n       ".join(lines) if lines else ""


def _fail(problem: str, checked: str, call: str = "", inputs: str = "",
          expected: object = _MISSING, got: object = _MISSING, hint: str | None = None) -> NoReturn:
    lines = [f"{problem}: {checked}"] + [s for s in (f"Call: {call}" if call else "", inputs) if s]
    if expected is not _MISSING:
        lines.append("Expected: " + _fmt(expected))
    if got is not _MISSING:
        lines.append("Got:      " + _fmt(got))
    if hint:
        lines.append(f"Likely mistake: {hint}")
    raise CheckFailed("\n".join(lines))


def _where(err: BaseException) -> str:
    """' (line N of your function: `code`)' for the last frame of an error outside this file."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if f.filename != __file__ and "site-packages" not in f.filename]
    if not frames or not frames[-1].line:
        return ""
    frame = frames[-1]
    return f"\nAt: line {frame.lineno} of {frame.name}: {frame.line.strip()}"


def _call(problem: str, fn: Callable, call: str, *args: object, **kwargs: object) -> object:
    """fn(*args, **kwargs); an exception of your code comes back as CheckFailed."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if isinstance(err, NotImplementedError):
            detail += " (is the solution cell filled in, and was it run?)"
        failure = CheckFailed(f"{problem}: your function raised {detail}\nCall: {call}{_where(err)}")
    raise failure


def _quiet(check: Callable) -> Callable:
    """Run a check with warnings silenced: nbgrader scores a cell 0 if anything reaches stderr."""
    @functools.wraps(check)
    def quiet_check(*args: object, **kwargs: object) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return check(*args, **kwargs)
    return quiet_check


def _as_input(value: list | float, dtype: torch.dtype) -> Tensor | float:
    return torch.tensor(value, dtype=dtype) if isinstance(value, list) else value


def _close(got: Tensor, want: Tensor, rtol: float, atol: float) -> bool:
    got = got.detach().cpu().double()
    want = want.detach().cpu().double()
    return got.shape == want.shape and torch.allclose(got, want, rtol=rtol, atol=atol)


def _likely(case: dict, got: Tensor, expected: Tensor) -> str | None:
    """The hint of a stored mistake whose output `got` matches, if any."""
    tol = _values()["tolerance"]
    for mistake in case["mistakes"]:
        output = torch.tensor(mistake["output"], dtype=torch.float64)
        if _close(got, output, tol["mistake_rtol"], tol["mistake_atol"]):
            return mistake["hint"]
    nonfinite = got.shape == expected.shape and not torch.isfinite(got.detach().cpu()).all()
    return _hint(case["nonfinite_mistake"]) if nonfinite and case["nonfinite_mistake"] else None


def _check_case(problem: str, fn: Callable, case: dict, dtype: torch.dtype) -> int:
    """Type, shape, dtype and value of fn on one stored case; returns the number of checks."""
    args = [_as_input(v, dtype) for v in case["args"].values()]
    kwargs = {k: _as_input(v, dtype) for k, v in case["kwargs"].items()}
    names = list(case["args"]) + [f"{k}={k}" if isinstance(v, list) else f"{k}={v!r}"
                                  for k, v in case["kwargs"].items()]
    call = f"{problem}({', '.join(names)})"
    inputs = _inputs({**dict(zip(case["args"], args)),
                      **{k: v for k, v in kwargs.items() if isinstance(v, Tensor)}})
    expected = torch.tensor(case["expected"], dtype=torch.float64)
    got = _call(problem, fn, call, *args, **kwargs)
    where = f' [case: {case["name"]}, {str(dtype).removeprefix("torch.")} inputs]'
    # A plain call adds nothing to the Input lines, which name the arguments in order.
    shown_call = call if case["kwargs"] else ""
    report = functools.partial(_fail, problem, call=shown_call, inputs=inputs, expected=expected, got=got)
    if not isinstance(got, Tensor):
        report(f"the result must be a torch.Tensor, got {type(got).__name__}{where}")
    if got.shape != expected.shape:
        report(f"the result must have shape {tuple(expected.shape)}, got {tuple(got.shape)}{where}",
               hint=_likely(case, got, expected))
    if got.dtype != dtype:
        report(f"the result must have the dtype of the inputs, got {got.dtype}{where}")
    if not torch.isfinite(got.detach()).all():
        report(f"the result must be finite{where}", hint=_likely(case, got, expected))
    tol = _values()["tolerance"]
    rtol, atol = (tol["rtol"], tol["atol"]) if dtype == torch.float64 else (1e-4, 1e-4)
    if not _close(got, expected, rtol, atol):
        report(f"wrong value{where}", hint=_likely(case, got, expected))
    return 4


def _part_calls(case: dict, dtype: torch.dtype) -> list[tuple[str, tuple[Tensor, ...], Tensor]]:
    """(part, its arguments, its expected value) for each part of a composite case."""
    named = {name: _as_input(value, dtype) for name, value in case["args"].items()}
    calls = []
    for part in case.get("parts", []):
        args = tuple(torch.zeros_like(named["z"]) if name == "zeros" else named[name]
                     for name in part["args"])
        calls.append((part["problem"], args, torch.tensor(part["expected"], dtype=dtype)))
    return calls


def _wrong_parts(fn: Callable, case: dict, dtype: torch.dtype) -> list[str]:
    """The parts of a composite case that your own functions (fn's namespace) get wrong."""
    namespace = getattr(fn, "__globals__", {})
    wrong: list[str] = []
    for part, args, expected in _part_calls(case, dtype):
        own = namespace.get(part)
        if not callable(own):
            continue  # not defined: the composite's own error says so
        try:
            got = own(*args)
        except Exception:  # noqa: BLE001 - a part that raises is a wrong part
            got = None
        right = isinstance(got, Tensor) and _close(got, expected.double(), 1e-4, 1e-4)
        if not right and part not in wrong:
            wrong.append(part)
    return wrong


def _same_arguments(given: tuple, stored: tuple[Tensor, ...]) -> bool:
    if len(given) != len(stored):
        return False
    try:
        pairs = [torch.broadcast_tensors(torch.as_tensor(a).detach().double(), b.double())
                 for a, b in zip(given, stored)]
    except (RuntimeError, TypeError, ValueError):
        return False
    return all(a.shape == b.shape and torch.allclose(a, b, atol=1e-6) for a, b in pairs)


@contextlib.contextmanager
def _parts_replaced(fn: Callable, case: dict, parts: list[str], dtype: torch.dtype) -> Iterator[None]:
    """Within the block, each of `parts` in fn's namespace returns the expected value for the
    case's arguments (and is your own function for any other arguments)."""
    namespace = getattr(fn, "__globals__", {})
    saved = {part: namespace[part] for part in parts}

    def replacement(part: str) -> Callable:
        own = saved[part]

        def answer(*args: object, **kwargs: object) -> Tensor:
            given = args + tuple(kwargs.values())
            for name, stored, expected in _part_calls(case, dtype):
                if name == part and _same_arguments(given, stored):
                    return expected
            return own(*args, **kwargs)
        return answer

    try:
        for part in parts:
            namespace[part] = replacement(part)
        yield
    finally:
        namespace.update(saved)


def _check_case_carried(problem: str, fn: Callable, case: dict, dtype: torch.dtype) -> tuple[int, list[str]]:
    """_check_case; for a composite that fails only because of your own wrong parts (error
    carried forward, as in the grader), the count and those parts."""
    try:
        return _check_case(problem, fn, case, dtype), []
    except CheckFailed:
        wrong = _wrong_parts(fn, case, dtype) if "parts" in case else []
        if not wrong:
            raise
    with _parts_replaced(fn, case, wrong, dtype):
        try:
            return _check_case(problem, fn, case, dtype), wrong
        except CheckFailed as failure:  # wrong even on right parts: its own mistake, shown so
            own_mistake = failure
    labels = " and ".join(_problem_label(part) for part in wrong)
    fail, them = ("fails its check", "it") if len(wrong) == 1 else ("fail their checks", "them")
    raise CheckFailed(f"{own_mistake}\nAlso: this used the expected values of {labels} in place "
                      f"of yours, which {fail}: fix {them} too.")


def _check_cases(problem: str, fn: Callable) -> tuple[int, list[str]]:
    """Every stored case in float64, then the last one again in float32: the number of checks
    and the parts carried forward (your own wrong parts, given which the answer is right)."""
    cases = _values()["problems"][problem]
    runs = [(case, torch.float64) for case in cases] + [(cases[-1], torch.float32)]
    count, carried = 0, []
    for case, dtype in runs:
        done, wrong = _check_case_carried(problem, fn, case, dtype)
        count += done
        carried += [part for part in wrong if part not in carried]
    return count, carried


def _passed(problem: str, count: int, carried: list[str] = ()) -> None:
    if not carried:
        print(f"{problem}: {count} checks passed.")
        return
    carried = sorted(carried, key=list(_contract()).index)
    own = " and ".join(carried)
    labels = " and ".join(_problem_label(part) for part in carried)
    fail, them = ("fails its check", "it") if len(carried) == 1 else ("fail their checks", "them")
    print(f"{problem}: {count} checks passed, given your own {own}, which {fail}: fix {labels} "
          f"first. (Your {problem} is right given {them}; the grader accepts that too.)")


# ------------------------------------------------------------- the FUNCTION problems
def _kl_of_itself_is_zero(fn: Callable[..., Tensor]) -> int:
    """gaussian_kl(mu, logvar, mu, logvar) is 0: one check."""
    mu = torch.tensor([[0.3, -1.2, 0.5], [2.0, 0.1, -0.7]], dtype=torch.float64)
    logvar = torch.tensor([[0.4, -0.3, 1.1], [-2.0, 0.0, 0.6]], dtype=torch.float64)
    call = "gaussian_kl(mu, logvar, mu, logvar)"
    got = _call("gaussian_kl", fn, call, mu, logvar, mu, logvar)
    if not (isinstance(got, Tensor) and _close(got, torch.zeros(2, dtype=torch.float64), 0, 1e-9)):
        _fail("gaussian_kl", "the KL of a distribution with itself must be 0", call,
              _inputs({"mu": mu, "logvar": logvar}), torch.zeros(2), got)
    return 1


# Properties a problem's check tests beyond its stored cases: functions of the student's
# function that return how many checks they passed.
_MORE_CHECKS: dict[str, tuple[Callable[[Callable], int], ...]] = {"gaussian_kl": (_kl_of_itself_is_zero,)}


def _stored_cases_check(problem: str) -> Callable[[Callable[..., Tensor]], None]:
    """The check of a FUNCTION problem: its stored cases (float64, then the last in float32),
    error carried forward for a composite, then its properties in _MORE_CHECKS."""
    cases = _values()["problems"].get(problem, [])
    parts = sorted({part["problem"] for case in cases for part in case.get("parts", [])},
                   key=list(_contract()).index)

    @_quiet
    def check(fn: Callable[..., Tensor]) -> None:
        if not cases:
            raise CheckFailed(f"{problem}: check_values.json holds no cases for it: the course must "
                              "regenerate it (python -m autograder.check_values)")
        count, carried = _check_cases(problem, fn)
        count += sum(more(fn) for more in _MORE_CHECKS.get(problem, ()))
        _passed(problem, count, carried)

    names = "; ".join(case["name"] for case in cases)
    own = f"; right given your own {' and '.join(parts)} is accepted" if parts else ""
    check.__name__ = check.__qualname__ = _contract()[problem]["check_function"]
    check.__doc__ = f"Checks {problem} on fixed inputs ({names}), in float64 and float32{own}."
    return check


# ------------------------------------------------------------------------ reparameterize
def _reparam_noise(fn: Callable[..., Tensor]) -> int:
    """Shape, dtype and the noise: fresh, one eps per entry, from torch's generator."""
    p, call = "reparameterize", "reparameterize(mu, logvar)"
    mu, logvar = torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5, 3, dtype=torch.float64)
    inputs = _inputs({"mu": mu, "logvar": logvar})
    torch.manual_seed(0)
    z = _call(p, fn, call, mu, logvar)
    report = functools.partial(_fail, p, call=call, inputs=inputs, got=z)
    if not isinstance(z, Tensor):
        report(f"the result must be a torch.Tensor, got {type(z).__name__}")
    if z.shape != mu.shape or z.dtype != torch.float64:
        report(f"the result must have the shape and dtype of mu, (5, 3) float64; got "
               f"{tuple(z.shape)} {z.dtype}")
    if torch.equal(z, mu):
        report("z must be a random sample, not mu", hint=_hint("reparam_no_noise"))
    if all(torch.equal(row, z[0]) for row in z):
        report("every row of z is the same: each example needs its own noise",
               hint=_hint("reparam_shared_noise"))
    if torch.equal(_call(p, fn, call, mu, logvar), z):
        report("a second call gave the same z: draw new noise on every call "
               "(no torch.manual_seed inside the function)")
    torch.manual_seed(0)
    if not torch.equal(_call(p, fn, call, mu, logvar), z):
        report("torch.manual_seed(0) before two calls must give the same z",
               hint=_hint("reparam_not_torch_rng"))
    return 6


def _reparam_moments_and_gradient(fn: Callable[..., Tensor]) -> int:
    """Mean and std of 20000 draws; dz/dmu = 1 and dz/dlogvar = (z - mu) / 2."""
    p, call, n = "reparameterize", "reparameterize(mu, logvar)", 20000
    mu_row = torch.tensor([0.5, -1.0], dtype=torch.float64)
    logvar_row = torch.tensor([1.0, -0.5], dtype=torch.float64)
    inputs = f"Input: mu and logvar of shape ({n}, 2), every row mu = {_fmt(mu_row)}, " \
             f"logvar = {_fmt(logvar_row)}"
    mu = mu_row.repeat(n, 1).requires_grad_()
    logvar = logvar_row.repeat(n, 1).requires_grad_()
    z = _call(p, fn, call, mu, logvar)
    std = torch.exp(logvar_row / 2)
    if not torch.allclose(z.detach().mean(0), mu_row, atol=0.1):
        _fail(p, f"the mean of {n} draws must be mu (within 0.1)", call, inputs, mu_row,
              z.detach().mean(0))
    if not torch.allclose(z.detach().std(0), std, atol=0.1):
        wrong_std = torch.allclose(z.detach().std(0), torch.exp(logvar_row), atol=0.1)
        _fail(p, f"the std of {n} draws must be exp(logvar / 2) (within 0.1)", call, inputs, std,
              z.detach().std(0), _hint("reparam_std_is_exp_logvar") if wrong_std else None)
    if not z.requires_grad:
        _fail(p, "z must carry gradients to mu and logvar", call, inputs,
              hint=_hint("reparam_no_gradient"))
    _call(p, z.sum().backward, "reparameterize(mu, logvar).sum().backward()")
    if mu.grad is None or not torch.allclose(mu.grad, torch.ones_like(mu)):
        _fail(p, "dz/dmu must be 1 for every entry", call, inputs, 1.0,
              None if mu.grad is None else mu.grad[:2], _hint("reparam_no_gradient"))
    want = (z.detach() - mu.detach()) / 2  # exp(logvar / 2) * eps / 2
    if logvar.grad is None or not torch.allclose(logvar.grad, want):
        _fail(p, "dz/dlogvar must be exp(logvar / 2) * eps / 2 = (z - mu) / 2", call, inputs,
              want[:2], None if logvar.grad is None else logvar.grad[:2],
              _hint("reparam_no_gradient"))
    return 5


@_quiet
def check_reparameterize(fn: Callable[..., Tensor]) -> None:
    """Checks reparameterize(mu, logvar); leaves torch's random generator as it was."""
    with torch.random.fork_rng(devices=[]):
        count = _reparam_noise(fn) + _reparam_moments_and_gradient(fn)
    _passed("reparameterize", count)


# ---------------------------------------------------------------------------------- VAE
def _vae_shapes(model: torch.nn.Module, made: str, x_dim: int, z_dim: int) -> int:
    """encode, decode (2-D and 3-D z), forward and sample give the contract's shapes."""
    x = (torch.rand(7, x_dim) > 0.5).float()
    z_2d, z_3d = torch.randn(7, z_dim), torch.randn(4, 5, z_dim)
    shapes = {  # call -> (how to run it, expected shape or shapes)
        "model.encode(x)": (lambda: model.encode(x), [(7, z_dim), (7, z_dim)]),
        "model.decode(z), z of shape (7, z_dim)": (lambda: model.decode(z_2d), (7, x_dim)),
        "model.decode(z), z of shape (4, 5, z_dim)": (lambda: model.decode(z_3d), (4, 5, x_dim)),
        "model(x)": (lambda: model(x), [(7, x_dim), (7, z_dim), (7, z_dim)]),
        "model.sample(6)": (lambda: model.sample(6), (6, x_dim)),
    }
    for call, (run, want) in shapes.items():
        out = _call("VAE", run, f"{call} with x of shape (7, {x_dim}), model = {made}")
        outs = out if isinstance(out, (tuple, list)) else [out]
        got = [tuple(o.shape) if isinstance(o, Tensor) else type(o).__name__ for o in outs]
        if got != (want if isinstance(want, list) else [want]):
            hint = _hint("vae_decode_drops_leading_dims") if "(4, 5" in call else None
            _fail("VAE", "the result has the wrong shape", f"model = {made}; {call}",
                  expected=want, got=got if isinstance(want, list) else got[0], hint=hint)
    return len(shapes)


def _reached(out: Tensor, params: list[Tensor]) -> list[bool]:
    """For each parameter: does the gradient of out.sum() reach it (and is it nonzero)?"""
    if not out.requires_grad:
        return [False] * len(params)
    grads = torch.autograd.grad(out.sum(), params, retain_graph=True, allow_unused=True)
    return [g is not None and bool(g.abs().sum() > 0) for g in grads]


def _vae_outputs(model: torch.nn.Module, made: str, x_dim: int, z_dim: int) -> int:
    """Samples in [0, 1], logits (not probabilities), sampling in forward, gradients."""
    x = (torch.rand(7, x_dim) > 0.5).float()
    forward = f"{made}(x), x of shape (7, {x_dim})"
    probs = _call("VAE", model.sample, f"{made}.sample(50)", 50)
    if probs.min() < 0 or probs.max() > 1:
        _fail("VAE", "sample(n) must return Bernoulli means sigmoid(logits), in [0, 1]",
              f"{made}.sample(50)", expected="values in [0, 1]",
              got=[probs.min().item(), probs.max().item()])
    logits = _call("VAE", model.decode, f"{made}.decode(z)", 3 * torch.randn(50, z_dim))
    if logits.min() >= 0:
        _fail("VAE", "decode must return logits; all of 50 x decode(z) were >= 0",
              f"{made}.decode(3 * torch.randn(50, {z_dim}))",
              hint=_hint("vae_decoder_outputs_probabilities"))
    first, second = (_call("VAE", model, forward, x)[0] for _ in range(2))
    if torch.equal(first, second):
        _fail("VAE", "two calls of model(x) gave the same logits: forward must decode a random "
              "z = reparameterize(mu, logvar)", forward, hint=_hint("vae_forward_no_sampling"))
    logits, mu, logvar = model(x)
    params = [q for q in model.parameters() if q.requires_grad]
    from_logits, from_encoder = _reached(logits, params), _reached(mu + logvar, params)
    if not any(from_logits) or any(e and not d for e, d in zip(from_encoder, from_logits)):
        _fail("VAE", "the gradient of model(x)'s logits must reach the decoder and, through "
              "z = reparameterize(mu, logvar), the encoder", forward)
    return 4


@_quiet
def check_vae(cls: type) -> None:
    """Checks the VAE class: constructor arguments, shapes, logits, sampling, gradients."""
    count = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for x_dim, z_dim, hidden_dim in ((64, 2, 32), (16, 3, 16)):  # square images (contract, Problem 7)
            made = f"VAE(x_dim={x_dim}, z_dim={z_dim}, hidden_dim={hidden_dim})"
            model = _call("VAE", cls, made, x_dim=x_dim, z_dim=z_dim, hidden_dim=hidden_dim)
            if not isinstance(model, torch.nn.Module) or not list(model.parameters()):
                _fail("VAE", "VAE must be a torch.nn.Module with parameters (its layers)", made)
            count += 1 + _vae_shapes(model, made, x_dim, z_dim)
            count += _vae_outputs(model, made, x_dim, z_dim)
    _passed("VAE", count)


# ------------------------------------------------------------------ before you submit
# The checks of the problems, in the notebook's order, by problem: each problem's check is its
# own above (a sampler or a model), else its stored cases. Each is also this module's
# check_<name> (e.g. check_gaussian_kl), the name the notebook's check cell calls.
_OWN_CHECKS: dict[str, Callable[[object], None]] = {"reparameterize": check_reparameterize, "VAE": check_vae}
CHECKS: dict[str, Callable[[object], None]] = {
    problem: _OWN_CHECKS.get(problem) or _stored_cases_check(problem) for problem in _contract()}
globals().update({_contract()[problem]["check_function"]: check for problem, check in CHECKS.items()})
# What a model's training and held-out ELBO use of your code (the grader uses its own).
TRAINING_USES: tuple[str, ...] = tuple(name for name, entry in _contract().items() if entry["trains_model"])
_MODEL = next(name for name, entry in _contract().items() if entry["kind"] == "model")
_ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"
_last_verdict: list[str] = []  # the latest model_verdict, for check_all


def _run_check(problem: str, namespace: dict) -> tuple[bool, str]:
    """(passed, what it printed or the first lines of its failure) of one problem's check."""
    if not callable(namespace.get(problem)):
        return False, f"{problem} is not defined: run its solution cell"
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            CHECKS[problem](namespace[problem])
    except Exception as failure:  # noqa: BLE001 - CheckFailed, or a crash inside the check
        lines = str(failure).splitlines() or [type(failure).__name__]
        mistake = [line for line in lines if line.startswith(("Likely mistake:", "Also:"))]
        return False, "\n".join(lines[:1] + mistake)
    return True, printed.getvalue().strip()


def _failing(namespace: dict, problems: tuple[str, ...]) -> list[str]:
    """One line per problem among `problems` whose check fails (empty when all pass)."""
    lines = []
    for problem in problems:
        passed, message = _run_check(problem, namespace)
        if not passed:
            lines.append(f"  {_problem_label(problem)} fails its check: {message.splitlines()[0]}")
    return lines


@contextlib.contextmanager
def explain_non_finite(namespace: dict, *problems: str) -> Iterator[None]:
    """Turn a FloatingPointError of the block (a nan or inf loss or value, see vae_course) into
    a CheckFailed naming the checks of `problems` that fail, e.g.
    `with explain_non_finite(globals(), "elbo", "VAE"): train_vae(...)`."""
    try:
        yield
    except FloatingPointError as error:
        stop = str(error)
    else:
        return
    failing = _failing(namespace, problems)
    if failing:
        why = "It comes from code that fails its check:\n" + "\n".join(failing)
    else:
        why = (f"The checks of {', '.join(problems)} pass, so look for an exp or log of your own "
               "(e.g. in the VAE) that overflows, or a logvar that grows without bound.")
    raise CheckFailed(f"Stopped: {stop}, not a finite number.\n{why}")


def _target() -> dict:
    return _values()["model"]


def model_target() -> str:
    """The grader's target for the trained model, in words (from check_values.json)."""
    target = _target()
    reference = target["reference_heldout_elbo"]
    full, partial = reference - target["full_margin"], reference - target["partial_margin"]
    arguments = ", ".join(f"{name}={value}" for name, value in target["model_kwargs"].items())
    return (f"The grader trains your VAE({arguments}) for {target['steps']} "
            f"Adam steps (batch {target['batch_size']}, lr {target['lr']:g}) with a correct loss and "
            f"sampler. The reference model reaches a held-out ELBO of {reference:.2f} nats per image "
            f"after the same steps.\n"
            f"  {target['full_points']} of the {_MODEL}'s {_contract()[_MODEL]['points']} points: {full:.2f} "
            f"or more (within {target['full_margin']:g} nats of the reference);\n"
            f"  {target['partial_points']} of them: {partial:.2f} or more (within "
            f"{target['partial_margin']:g} nats); below that, none.")


def model_verdict(estimate: float, namespace: dict) -> str:
    """What the held-out ELBO `estimate` of your trained model (vae_course's
    estimate_heldout_elbo: the grader's protocol, public data) means for the model's points.
    An estimate: the grader retrains your VAE with its own correct loss and sampler."""
    target = _target()
    reference = target["reference_heldout_elbo"]
    full, partial = reference - target["full_margin"], reference - target["partial_margin"]
    lines = [f"Held-out ELBO of your model: {estimate:.2f} nats per image (an estimate with the "
             f"grader's protocol; target {full:.2f} for full points, {partial:.2f} for partial)."]
    failing = _failing(namespace, TRAINING_USES)
    if failing:
        verdict = ("no verdict: your training used code that fails its check, so this number is "
                   "not what the grader will see:\n" + "\n".join(failing))
    elif estimate >= full:
        verdict = f"on track for the full {target['full_points']} model points."
    elif estimate >= partial:
        verdict = (f"on track for {target['partial_points']} of the {target['full_points']} "
                   f"model points: {full - estimate:.2f} nats short of full points.")
    else:
        verdict = (f"on track for no model points: {partial - estimate:.2f} nats short of the "
                   "partial points. Look at your architecture (hidden layers, no activation on "
                   "the logits or logvar).")
    lines.append("Verdict: " + verdict)
    _last_verdict[:] = lines
    return "\n".join(lines)


def _notebook_path(folder: Path) -> Path | None:
    """vae.ipynb in `folder`, else its only notebook."""
    if (folder / "vae.ipynb").is_file():
        return folder / "vae.ipynb"
    notebooks = sorted(folder.glob("*.ipynb"))
    return notebooks[0] if len(notebooks) == 1 else None


def unanswered_questions(notebook: Path | None = None) -> list[str] | None:
    """The written questions of the saved notebook still holding the placeholder (None when
    no notebook is found). Questions are numbered in order of their answer cells."""
    path = notebook or _notebook_path(Path.cwd())
    if path is None:
        return None
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    answers = [cell for cell in cells if cell["cell_type"] == "markdown"
               and cell.get("metadata", {}).get("nbgrader", {}).get("solution")]
    unanswered = []
    for number, cell in enumerate(answers, start=1):
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if text.strip() in ("", _ANSWER_PLACEHOLDER):
            unanswered.append(f"Question {number}")
    return unanswered


def check_all(namespace: dict, notebook: Path | None = None) -> None:
    """Where you stand before you submit: every problem's visible check (run now on the
    functions in `namespace`, e.g. `globals()`), the model verdict of the training cell's last
    run, and the written questions still unanswered in the saved notebook."""
    points = {name: entry["points"] for name, entry in _contract().items()}
    print("Visible checks (a subset of the grader's tests):")
    passing = 0
    for problem in points:
        passed, message = _run_check(problem, namespace)
        passing += passed
        mark = "passed" if passed else "FAILED"
        first, *rest = message.splitlines() or [""]
        print(f"  [{mark}] {_problem_label(problem)}, {points[problem]} points: {first}")
        for line in rest:
            print(f"           {line}")
    print(f"  {passing} of {len(points)} problems pass their visible checks.")
    print("\nModel:")
    print("\n".join(f"  {line}" for line in "\n".join(_last_verdict).splitlines()) if _last_verdict
          else "  not trained yet: run the training cell (after Problem 7).")
    print("\nWritten questions (graded by hand; as last saved, so save first):")
    unanswered = unanswered_questions(notebook)
    if unanswered is None:
        print("  could not find the notebook in this folder: check your answers by eye.")
    elif unanswered:
        print(f"  unanswered: {', '.join(unanswered)}.")
    else:
        print("  all answered.")
