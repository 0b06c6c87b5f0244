"""The catalogue of student submissions is itself checked: every variant builds, every
mistake is really wrong on some input, every correct variant really agrees with the reference."""
from __future__ import annotations

import ast
import contextlib
import io
import math
import re

import numpy as np
import pytest
import torch

from autograder import mistakes
from autograder.catalogue import (
    ALL, CORRECT, MISTAKES, Hint, Variant, build_source, patched_function, reference_source, write_submissions,
)
from autograder.check_values import visible_cases
from assignment.contract import CONTRACT, FUNCTION, PROBLEMS

DETERMINISTIC = tuple(problem.name for problem in CONTRACT if problem.kind == FUNCTION)


def load(variant: Variant | None) -> dict:
    """Exec the variant's module (the reference for None) into a fresh namespace, quietly."""
    source = reference_source() if variant is None else build_source(variant)
    name = "reference" if variant is None else variant.name
    namespace = {"__name__": f"submission_{name}"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace


_MODULES: dict[str | None, dict] = {}


def module(variant: Variant | None) -> dict:
    key = None if variant is None else variant.name
    if key not in _MODULES:
        _MODULES[key] = load(variant)
    return _MODULES[key]


def ids(variants):
    return [v.name for v in variants]


# ------------------------------------------------------------------------------ probes
def _probes() -> dict[str, list[tuple[tuple, dict]]]:
    g = torch.Generator().manual_seed(1234)

    def randn(*shape, dtype=torch.float32, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    def bits(*shape, dtype=torch.float32):
        return torch.bernoulli(torch.full(shape, 0.5, dtype=torch.float64), generator=g).to(dtype)

    f64 = torch.float64
    probes = {
        "gaussian_kl": [
            ((randn(5, 3), randn(5, 3)), {}),
            ((randn(5, 3), randn(5, 3)), {"mu_p": 0.3, "logvar_p": -0.5}),
            ((randn(4, 3, dtype=f64), randn(4, 3, dtype=f64)),
             {"mu_p": randn(4, 3, dtype=f64), "logvar_p": randn(4, 3, dtype=f64)}),
            ((randn(2, 4, 3, dtype=f64), randn(2, 4, 3, dtype=f64)),
             {"mu_p": randn(4, 3, dtype=f64), "logvar_p": randn(4, 3, dtype=f64)}),
            ((randn(2, 4, 3), randn(2, 4, 3)), {"mu_p": 1.0, "logvar_p": 0.7}),
            ((randn(2, 3), torch.tensor([[-35.0, 25.0, 0.5], [12.0, -20.0, -6.0]])),   # wide log-variances
             {"mu_p": randn(2, 3), "logvar_p": torch.tensor([[-30.0, 20.0, -6.0], [25.0, -35.0, 8.0]])}),
        ],
        "bernoulli_log_likelihood": [
            ((bits(6, 5), randn(6, 5, scale=3.0)), {}),
            ((torch.rand(6, 5, generator=g, dtype=f64), randn(6, 5, dtype=f64, scale=3.0)), {}),
            ((bits(4, 5), randn(3, 4, 5, scale=3.0)), {}),            # (K, B, D) against (B, D)
            ((bits(3, 4, 5), randn(4, 5, scale=3.0)), {}),            # x carries the sample axis
            ((torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([[-500.0, 500.0, 60.0, -60.0]])),
             {}),
            ((torch.tensor([[1.0, 0.0]], dtype=f64), torch.tensor([[-1000.0, 1000.0]], dtype=f64)),
             {}),
        ],
        "elbo": [
            ((bits(6, 5), randn(6, 5, scale=2.0), randn(6, 3), randn(6, 3)), {}),
            ((bits(6, 5), randn(6, 5, scale=2.0), randn(6, 3), randn(6, 3)), {"beta": 2.5}),
            ((bits(6, 5, dtype=f64), randn(6, 5, dtype=f64), randn(6, 3, dtype=f64),
              randn(6, 3, dtype=f64)), {"beta": 0.5}),
        ],
        "gaussian_log_density": [
            ((randn(5, 3), randn(5, 3), randn(5, 3)), {}),
            ((randn(2, 5, 3, dtype=f64), randn(5, 3, dtype=f64), randn(5, 3, dtype=f64)), {}),
            ((randn(5, 3), torch.zeros(5, 3), torch.zeros(5, 3)), {}),
        ],
        "iwae_bound": [
            ((bits(3, 5), randn(4, 3, 5, scale=2.0), randn(4, 3, 2), randn(3, 2), randn(3, 2)),
             {}),
            ((bits(3, 5, dtype=f64), randn(6, 3, 5, dtype=f64), randn(6, 3, 2, dtype=f64),
              randn(3, 2, dtype=f64), randn(3, 2, dtype=f64)), {}),
            # log-weights around -1e4: every pixel on, every logit -2000
            ((torch.ones(3, 5), torch.full((4, 3, 5), -2000.0), randn(4, 3, 2), randn(3, 2),
              randn(3, 2)), {}),
            ((bits(3, 5), randn(1, 3, 5), randn(1, 3, 2), randn(3, 2), randn(3, 2)), {}),
        ],
    }
    return probes


def _with_visible_cases(probes: dict[str, list]) -> dict[str, list]:
    """The probes above, and each FUNCTION problem's visible-check cases in float64."""
    def tensor(value):
        return torch.tensor(value, dtype=torch.float64) if isinstance(value, list) else value

    for problem in DETERMINISTIC:
        probes.setdefault(problem, []).extend(
            (tuple(map(tensor, case.args.values())), {k: tensor(v) for k, v in case.kwargs.items()})
            for case in visible_cases(problem)[0])
    return probes


PROBES = _with_visible_cases(_probes())


def _clone(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def call(fn, args, kwargs):
    return fn(*[_clone(a) for a in args], **{k: _clone(v) for k, v in kwargs.items()})


def disagreement(expected: torch.Tensor, fn, args, kwargs) -> str | None:
    """Why fn's output is not the expected one on these inputs, or None if it agrees."""
    try:
        got = call(fn, args, kwargs)
    except Exception as error:  # a crash on a valid input is a difference
        return f"raised {type(error).__name__}: {error}"
    if not isinstance(got, torch.Tensor):
        return f"returned {type(got).__name__}"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)} != {tuple(expected.shape)}"
    if got.dtype != expected.dtype:
        return f"dtype {got.dtype} != {expected.dtype}"
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return f"values differ by up to {(got - expected).abs().max().item():.3g}"
    return None


# ------------------------------------------------------------------- the catalogue itself
def test_counts_names_and_problems():
    names = [v.name for v in ALL]
    assert len(names) == len(set(names)), "variant names must be unique"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    assert len(MISTAKES) >= 30 and len(CORRECT) >= 6
    assert {v.problem for v in MISTAKES} == set(PROBLEMS)
    assert all(v.problem is None and v.hint is None for v in CORRECT)
    for v in MISTAKES:
        assert {name.split(".")[0] for name in v.replaces} == {v.problem}, f"{v.name} must change exactly its problem"
        assert not v.extra, f"{v.name}: a mistake changes one function and adds nothing"
        assert v.description and "\n" not in v.description
        assert v.hint is None or isinstance(v.hint, Hint), f"{v.name}: a hint is a Hint"


def test_hints_are_codes_of_the_grader_table():
    for v in MISTAKES:
        if v.hint is not None:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", v.hint.code)
            assert mistakes.hint(v.hint.code).problem == v.problem, f"{v.name}: {v.hint.code} not a {v.problem} code"
            assert v in mistakes.hint(v.hint.code).variants


def test_every_problem_has_a_mistake_the_grader_names():
    for problem in PROBLEMS:
        assert any(v.problem == problem and v.hint for v in MISTAKES), problem


def test_a_mistake_is_recognised_by_running_its_own_code():
    (variant,) = [v for v in MISTAKES if v.name == "kl_missing_half"]
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.3, 0.2]])
    own = patched_function(variant)
    assert torch.allclose(own(mu, logvar), 2 * module(None)["gaussian_kl"](mu, logvar))
    assert mistakes.recognise("gaussian_kl", own(mu, logvar), (mu, logvar), {}).code == "kl_missing_half"


def _top_level(source: str) -> dict[str, list[str]]:
    defs: dict[str, list[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            defs.setdefault(node.name, []).append(ast.dump(node))
    return defs


@pytest.mark.parametrize("variant", ALL, ids=ids(ALL))
def test_variant_builds_imports_and_patches_exactly_its_defs(variant):
    reference = _top_level(reference_source())
    built = _top_level(build_source(variant))
    for name, (dump,) in reference.items():
        assert len(built[name]) == 1, f"{name} defined {len(built[name])} times"
        if name in {replaced.split(".")[0] for replaced in variant.replaces}:
            assert built[name][0] != dump, f"{name} is listed as replaced but is unchanged"
        else:
            assert built[name][0] == dump, f"{name} changed without being listed"
    namespace = load(variant)
    for name in PROBLEMS:
        assert callable(namespace[name]), name
    assert isinstance(namespace["VAE"], type) and issubclass(namespace["VAE"], torch.nn.Module)


def test_build_source_rejects_unknown_names():
    bad = Variant("bad", "VAE", "d", {"NotAName": "def NotAName():\n    pass\n"})
    with pytest.raises(KeyError, match="NotAName"):
        build_source(bad)


def test_write_submissions(tmp_path):
    paths = write_submissions(tmp_path, ALL[:3] + CORRECT[:1])
    assert [p.name for p in paths] == [f"{v.name}.py" for v in ALL[:3] + CORRECT[:1]]
    assert paths[0].read_text() == build_source(ALL[0])


# ------------------------------------------------------------------ mistakes are wrong
DETERMINISTIC_MISTAKES = [v for v in MISTAKES if v.problem in DETERMINISTIC]


def test_probes_are_valid_for_the_reference():
    ref = module(None)
    for problem, probes in PROBES.items():
        for args, kwargs in probes:
            out = call(ref[problem], args, kwargs)
            assert torch.isfinite(out).all(), problem


@pytest.mark.parametrize("variant", DETERMINISTIC_MISTAKES, ids=ids(DETERMINISTIC_MISTAKES))
def test_deterministic_mistake_differs_from_reference(variant):
    ref, sub = module(None)[variant.problem], module(variant)[variant.problem]
    reasons = [
        disagreement(call(ref, args, kwargs), sub, args, kwargs)
        for args, kwargs in PROBES[variant.problem]
    ]
    if not any(reasons):  # right values everywhere: then the gradients must differ (a detached term)
        reasons = [gradient_disagreement(ref, sub, args, kwargs)
                   for args, kwargs in PROBES[variant.problem] if args[0].dtype == torch.float64]
    assert any(reasons), f"{variant.name} agrees with the reference on every probe, in value and gradient"


@pytest.mark.parametrize("variant", DETERMINISTIC_MISTAKES, ids=ids(DETERMINISTIC_MISTAKES))
def test_grader_table_recognises_the_hinted_mistake(variant):
    """The grader's `recognise` names the variant's hint on some probe and never another code
    (and names nothing for a mistake without a hint)."""
    table = mistakes
    sub = module(variant)[variant.problem]
    named = set()
    for args, kwargs in PROBES[variant.problem]:
        try:
            got = call(sub, args, kwargs)
        except Exception:
            continue
        mistake = table.recognise(variant.problem, got, args, kwargs)
        if mistake is not None:
            named.add(mistake.code)
    expected = {variant.hint.code} if variant.hint else set()
    assert named == expected, f"{variant.name}: the grader named {sorted(named)}"


def reparameterize_violations(fn) -> list[str]:
    """Contract properties of reparameterize that fn breaks (empty for a correct sampler)."""
    found = []
    torch.manual_seed(0)
    np.random.seed(0)
    mu, logvar = torch.full((20000, 3), 0.5), torch.full((20000, 3), 1.0)
    z = fn(mu, logvar)
    if z.shape != mu.shape:
        found.append("shape")
    elif torch.equal(z[0], z[1]):
        found.append("noise shared across the batch")
    elif (z.mean() - 0.5).abs() > 0.05 or (z.std() - math.exp(0.5)).abs() > 0.05:
        found.append(f"moments mean {z.mean():.3f} std {z.std():.3f}")
    mu = torch.randn(50, 3, requires_grad=True)
    logvar = torch.randn(50, 3, requires_grad=True)
    z = fn(mu, logvar)
    if not z.requires_grad:
        found.append("no gradient")
    else:
        grad_mu, grad_logvar = torch.autograd.grad(z.sum(), (mu, logvar), allow_unused=True)
        expected = (z.detach() - mu.detach()) / 2
        if grad_mu is None or not torch.allclose(grad_mu, torch.ones_like(mu)):
            found.append("dz/dmu != 1")
        if grad_logvar is None or not torch.allclose(grad_logvar, expected, atol=1e-5):
            found.append("dz/dlogvar wrong")
    for mu, logvar in ((torch.zeros(3), torch.zeros(20000, 3)), (torch.zeros(20000, 3), torch.zeros(3))):
        z = fn(mu, logvar)
        if z.shape != (20000, 3) or torch.equal(z[0], z[1]):
            found.append("noise not of the broadcast shape")
    z = fn(torch.zeros(20000, 2), torch.tensor([-35.0, 25.0]))
    if not torch.allclose(z.std(0).double(), torch.tensor([-17.5, 12.5], dtype=torch.float64).exp(), rtol=0.05):
        found.append(f"std {z.std(0)} at log-variances -35 and 25")
    first = (torch.manual_seed(7), fn(torch.zeros(4, 2), torch.zeros(4, 2)))[1]
    second = (torch.manual_seed(7), fn(torch.zeros(4, 2), torch.zeros(4, 2)))[1]
    if not torch.equal(first, second):
        found.append("not repeatable under torch.manual_seed")
    return found


def vae_violations(namespace: dict, x_dim=64, z_dim=2, hidden_dim=32) -> list[str]:
    """Contract properties of the VAE class that it breaks (empty for a correct one)."""
    found = []
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = namespace["VAE"](x_dim=x_dim, z_dim=z_dim, hidden_dim=hidden_dim)
    x = torch.bernoulli(torch.full((100, x_dim), 0.3))
    mu, logvar = model.encode(x)
    if mu.shape != (100, z_dim) or logvar.shape != (100, z_dim):
        return ["encode shapes"]
    if (logvar > 0).all():
        found.append("logvar always positive")
    mu2, _ = model.encode(torch.bernoulli(torch.full((100, x_dim), 0.7)))
    if torch.allclose(mu, mu2):
        found.append("encoder ignores its input")
    logits = model.decode(torch.randn(3, 5, z_dim))
    if logits.shape != (3, 5, x_dim):
        found.append(f"decode shape {tuple(logits.shape)}")
    elif (logits >= 0).all():
        found.append("decoder outputs probabilities")
    calls = []
    real = namespace["reparameterize"]
    namespace["reparameterize"] = lambda m, lv: calls.append(1) or real(m, lv)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            torch.manual_seed(1)
            out1 = model(x)
            torch.manual_seed(2)
            out2 = model(x)
    finally:
        namespace["reparameterize"] = real
    if not calls:
        found.append("forward does not call reparameterize")
    if len(out1) != 3 or out1[0].shape != (100, x_dim):
        found.append("forward shapes")
    elif torch.allclose(out1[0], out2[0]):
        found.append("forward does not sample")
    drawn = []
    decode = model.decode
    model.decode = lambda z: drawn.append(z) or decode(z)
    with torch.enable_grad():
        probs = model.sample(2000)
    del model.decode
    if probs.shape != (2000, x_dim):
        found.append("sample shape")
    elif probs.requires_grad:
        found.append("sample keeps a graph")
    elif (probs < 0).any() or (probs > 1).any():
        found.append("sample is not in [0, 1]")
    z = torch.cat([d.reshape(-1, z_dim) for d in drawn]) if drawn else None
    if z is None or (z.mean().abs() > 0.1) or ((z.std() - 1).abs() > 0.1):
        found.append("sample does not draw z from N(0, I)")
    return found


REPARAM_MISTAKES = [v for v in MISTAKES if v.problem == "reparameterize"]
VAE_MISTAKES = [v for v in MISTAKES if v.problem == "VAE"]


@pytest.mark.parametrize("variant", REPARAM_MISTAKES, ids=ids(REPARAM_MISTAKES))
def test_reparameterize_mistake_breaks_the_contract(variant):
    assert reparameterize_violations(module(variant)["reparameterize"])


@pytest.mark.parametrize("variant", VAE_MISTAKES, ids=ids(VAE_MISTAKES))
def test_vae_mistake_breaks_the_contract(variant):
    assert vae_violations(module(variant))


# ------------------------------------------------------------------ correct is correct
@pytest.mark.parametrize("variant", [None, *CORRECT], ids=["reference", *ids(CORRECT)])
def test_correct_deterministic_functions_agree_with_reference(variant):
    ref, sub = module(None), module(variant)
    with contextlib.redirect_stdout(io.StringIO()):
        for problem in DETERMINISTIC:
            for args, kwargs in PROBES[problem]:
                reason = disagreement(call(ref[problem], args, kwargs), sub[problem], args, kwargs)
                assert reason is None, f"{problem}{[tuple(a.shape) for a in args]}: {reason}"


def _grads(fn, args, kwargs):
    args = [a.clone().requires_grad_(True) for a in args]
    kwargs = {k: v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v
              for k, v in kwargs.items()}
    leaves = args + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    return torch.autograd.grad(fn(*args, **kwargs).sum(), leaves, allow_unused=True)


def gradient_disagreement(ref, fn, args, kwargs) -> bool:
    """True when fn's gradients are not the reference's on these inputs."""
    try:
        got = _grads(fn, args, kwargs)
    except RuntimeError:  # no graph at all
        return True
    return any(w is not None and (g is None or not torch.allclose(g, w, atol=1e-8))
               for w, g in zip(_grads(ref, args, kwargs), got))


@pytest.mark.parametrize("variant", CORRECT, ids=ids(CORRECT))
def test_correct_gradients_agree_with_reference(variant):
    ref, sub = module(None), module(variant)
    with contextlib.redirect_stdout(io.StringIO()):
        for problem in DETERMINISTIC:
            for args, kwargs in PROBES[problem]:
                if args[0].dtype != torch.float64:
                    continue
                for want, got in zip(_grads(ref[problem], args, kwargs),
                                     _grads(sub[problem], args, kwargs)):
                    if want is None:
                        continue
                    assert got is not None and torch.allclose(got, want, atol=1e-8), problem


@pytest.mark.parametrize("variant", [None, *CORRECT], ids=["reference", *ids(CORRECT)])
def test_correct_reparameterize_keeps_the_contract(variant):
    assert reparameterize_violations(module(variant)["reparameterize"]) == []


@pytest.mark.parametrize("variant", [None, *CORRECT], ids=["reference", *ids(CORRECT)])
@pytest.mark.parametrize("dims", [(64, 2, 32), (16, 3, 16)])  # square x_dims (side x side images)
def test_correct_vae_keeps_the_contract(variant, dims):
    x_dim, z_dim, hidden_dim = dims
    assert vae_violations(module(variant), x_dim, z_dim, hidden_dim) == []
