"""Visible checks of the VAE assignment: the quick tests the notebook's check cells call.

Each `check_*` function tries your code on a few small inputs (stored in
`check_values.json` beside this file) and on a few properties every correct answer has.
When all pass it prints one line; otherwise it raises AssertionError saying what was
checked, on which input, what was expected, what your code gave and, when the answer
matches a known mistake, the likely mistake. Passing them is necessary, not sufficient:
the grader runs more tests (other shapes, float32, broadcasting, gradients).
"""
from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import torch
from torch import Tensor

VALUES_PATH = Path(__file__).resolve().with_name("check_values.json")
_MISSING = object()


# ----------------------------------------------------------------- shared helpers
@functools.cache
def _values() -> dict:
    return json.loads(VALUES_PATH.read_text())


def _hint(code: str) -> str:
    return _values()["hints"][code]


def _fmt(value: object, indent: str = "") -> str:
    """Numbers with 4 decimals; a 2-D or larger tensor one row per line."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().double().tolist()
    if isinstance(value, list) and value and isinstance(value[0], list):
        return "[" + (",\n" + indent + " ").join(_fmt(v, indent + " ") for v in value) + "]"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4f}"
    return repr(value)[:200]


def _inputs(named: dict[str, object]) -> str:
    lines = []
    for name, value in named.items():
        shape = f" (shape {tuple(value.shape)})" if isinstance(value, Tensor) else ""
        head = f"  {name}{shape} = "
        lines.append(head + _fmt(value, " " * len(head)))
    return "Input:\n" + "\n".join(lines)


def _fail(problem: str, checked: str, call: str = "", inputs: str = "",
          expected: object = _MISSING, got: object = _MISSING, hint: str | None = None) -> NoReturn:
    lines = [f"{problem}: {checked}"] + [s for s in (f"Call: {call}" if call else "", inputs) if s]
    if expected is not _MISSING:
        lines.append("Expected: " + _fmt(expected, " " * 10))
    if got is not _MISSING:
        lines.append("Got:      " + _fmt(got, " " * 10))
    if hint:
        lines.append(f"Likely mistake: {hint}")
    raise AssertionError("\n".join(lines))


def _call(problem: str, fn: Callable, call: str, *args: object, **kwargs: object) -> object:
    """fn(*args, **kwargs); an exception of your code comes back as an AssertionError."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if isinstance(err, NotImplementedError):
            detail += " (is the solution cell filled in, and was it run?)"
        raise AssertionError(f"{problem}: your function raised {detail}\nCall: {call}") from err


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
    report = functools.partial(_fail, problem, call=call, inputs=inputs, expected=expected, got=got)
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


def _check_cases(problem: str, fn: Callable) -> int:
    """Every stored case in float64, then the last one again in float32."""
    cases = _values()["problems"][problem]
    count = sum(_check_case(problem, fn, case, torch.float64) for case in cases)
    return count + _check_case(problem, fn, cases[-1], torch.float32)


def _passed(problem: str, count: int) -> None:
    print(f"{problem}: {count} checks passed.")


# -------------------------------------------------------------- the deterministic problems
@_quiet
def check_gaussian_kl(fn: Callable[..., Tensor]) -> None:
    """Checks gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0)."""
    count = _check_cases("gaussian_kl", fn)
    mu = torch.tensor([[0.3, -1.2, 0.5], [2.0, 0.1, -0.7]], dtype=torch.float64)
    logvar = torch.tensor([[0.4, -0.3, 1.1], [-2.0, 0.0, 0.6]], dtype=torch.float64)
    call = "gaussian_kl(mu, logvar, mu, logvar)"
    got = _call("gaussian_kl", fn, call, mu, logvar, mu, logvar)
    if not (isinstance(got, Tensor) and _close(got, torch.zeros(2, dtype=torch.float64), 0, 1e-9)):
        _fail("gaussian_kl", "the KL of a distribution with itself must be 0", call,
              _inputs({"mu": mu, "logvar": logvar}), torch.zeros(2), got)
    _passed("gaussian_kl", count + 1)


@_quiet
def check_bernoulli_log_likelihood(fn: Callable[..., Tensor]) -> None:
    """Checks bernoulli_log_likelihood(x, logits), including logits of +-500."""
    _passed("bernoulli_log_likelihood", _check_cases("bernoulli_log_likelihood", fn))


@_quiet
def check_elbo(fn: Callable[..., Tensor]) -> None:
    """Checks elbo(x, logits, mu, logvar, beta=1.0): one value per example, beta on the KL."""
    _passed("elbo", _check_cases("elbo", fn))


@_quiet
def check_gaussian_log_density(fn: Callable[..., Tensor]) -> None:
    """Checks gaussian_log_density(z, mu, logvar)."""
    _passed("gaussian_log_density", _check_cases("gaussian_log_density", fn))


@_quiet
def check_iwae_bound(fn: Callable[..., Tensor]) -> None:
    """Checks iwae_bound(x, logits, z, mu, logvar) for K = 3, K = 1 and log-weights near -1e4."""
    _passed("iwae_bound", _check_cases("iwae_bound", fn))


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
        for x_dim, z_dim, hidden_dim in ((64, 2, 32), (12, 3, 16)):
            made = f"VAE(x_dim={x_dim}, z_dim={z_dim}, hidden_dim={hidden_dim})"
            model = _call("VAE", cls, made, x_dim=x_dim, z_dim=z_dim, hidden_dim=hidden_dim)
            if not isinstance(model, torch.nn.Module) or not list(model.parameters()):
                _fail("VAE", "VAE must be a torch.nn.Module with parameters (its layers)", made)
            count += 1 + _vae_shapes(model, made, x_dim, z_dim)
            count += _vae_outputs(model, made, x_dim, z_dim)
    _passed("VAE", count)
