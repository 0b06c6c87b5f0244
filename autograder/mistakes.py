"""Recognised mistakes: the table the grader reads to name a student's likely mistake.

Each deterministic mistake carries `wrong`, the output the mistaken function would give,
written as the reference function of `solutions.vae` plus the one change. When a
student's result is not the expected one, `recognise` looks for a mistake whose output
it matches. Mistakes of `reparameterize` and `VAE` are statistical or structural: they
have no `wrong` here, the hidden tests recognise them and look their hint up by code.

The codes are the ones `autograder/catalogue.py` refers to; the evidence for each mistake is in
ANCHORS.md ("Realistic mistakes seen in public code").
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from assignment.contract import PROBLEM_POINTS
from solutions import vae as ref

# A logit this large already saturates sigmoid in float32 (1 - sigmoid(17) == 0), so
# log(sigmoid(.)) and log(1 - sigmoid(.)) can give -inf there.
LARGE_LOGIT = 15.0


@dataclass(frozen=True)
class Mistake:
    code: str                                  # stable id, snake_case, e.g. "kl_missing_half"
    problem: str                               # one of the contract's problem names
    hint: str                                  # one teaching sentence for the student
    wrong: Callable[..., Tensor] | None = None  # the mistaken output; the problem's arguments
    # If set, a result that is non-finite where the reference is finite is put down to this
    # mistake when nonfinite_when(*args, **kwargs) is true (-inf and nan come in many forms).
    nonfinite_when: Callable[..., bool] | None = None


# --------------------------------------------------------------------------- helpers
def _tensor_args(*args: object) -> list[Tensor]:
    return [a for a in args if isinstance(a, Tensor)]


def _last_dim(*args: object) -> int:
    return torch.broadcast_shapes(*(a.shape for a in _tensor_args(*args)))[-1]


def _unsqueeze(a: Tensor | float) -> Tensor | float:
    return a.unsqueeze(-1) if isinstance(a, Tensor) else a


def _as_tensor_like(a: Tensor | float, like: Tensor) -> Tensor:
    return torch.as_tensor(a, dtype=like.dtype, device=like.device)


def _log_weights(x: Tensor, logits: Tensor, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """(K, batch) log-weights: the reference bound of each single sample (log 1 = 0)."""
    num_samples = max(z.shape[0], logits.shape[0])
    pick = lambda t, k: t[k : k + 1] if t.shape[0] > 1 else t  # noqa: E731
    return torch.cat([ref.iwae_bound(x, pick(logits, k), pick(z, k), mu, logvar)[None]
                      for k in range(num_samples)])


def _large_logits(*args: object, **kwargs: object) -> bool:
    logits = kwargs.get("logits", args[1] if len(args) > 1 else None)
    return isinstance(logits, Tensor) and bool(logits.detach().abs().max() > LARGE_LOGIT)


def _always(*args: object, **kwargs: object) -> bool:
    return True


# ------------------------------------------------------------------------ gaussian_kl
def _kl_prior_swapped(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    return ref.gaussian_kl(_as_tensor_like(mu_p, mu_q), _as_tensor_like(logvar_p, logvar_q),
                           mu_q, logvar_q)


def _kl_logvar_as_variance(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    log = lambda v: torch.log(_as_tensor_like(v, logvar_q))  # noqa: E731
    return ref.gaussian_kl(mu_q, log(logvar_q), mu_p, log(logvar_p))


def _kl_logvar_as_std(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    log_square = lambda s: torch.log(_as_tensor_like(s, logvar_q) ** 2)  # noqa: E731
    return ref.gaussian_kl(mu_q, log_square(logvar_q), mu_p, log_square(logvar_p))


_KL = (
    Mistake("kl_missing_half", "gaussian_kl",
            "It looks like the 1/2 in front of the KL is missing.",
            lambda *a, **k: 2 * ref.gaussian_kl(*a, **k)),
    Mistake("kl_std_for_logvar", "gaussian_kl",
            "It looks like exp(logvar) was used as the standard deviation: the variance is "
            "exp(logvar), so the standard deviation is exp(logvar / 2).",
            lambda mu_q, logvar_q, mu_p=0.0, logvar_p=0.0:
                ref.gaussian_kl(mu_q, 2 * logvar_q, mu_p, 2 * _as_tensor_like(logvar_p, logvar_q))),
    Mistake("kl_logvar_as_variance", "gaussian_kl",
            "It looks like logvar was used as the variance itself: the variance is exp(logvar).",
            _kl_logvar_as_variance),
    Mistake("kl_logvar_as_std", "gaussian_kl",
            "It looks like logvar was used as the standard deviation: it is the log of the "
            "variance, so the standard deviation is exp(logvar / 2).",
            _kl_logvar_as_std),
    Mistake("kl_sign", "gaussian_kl",
            "It looks like the sign of the KL is flipped: KL(q || p) is never negative.",
            lambda *a, **k: -ref.gaussian_kl(*a, **k)),
    Mistake("kl_mean_not_sum", "gaussian_kl",
            "It looks like the KL is averaged over the latent dimensions: sum it over the last "
            "dimension instead.",
            lambda *a, **k: ref.gaussian_kl(*a, **k) / _last_dim(*a, *k.values())),
    Mistake("kl_per_dimension", "gaussian_kl",
            "It looks like the per-coordinate KL terms are not summed over the last dimension.",
            lambda *a, **k: ref.gaussian_kl(*map(_unsqueeze, a),
                                            **{n: _unsqueeze(v) for n, v in k.items()})),
    Mistake("kl_prior_ignored", "gaussian_kl",
            "It looks like mu_p and logvar_p are ignored (the prior is always N(0, I)): use them "
            "in the formula.",
            lambda mu_q, logvar_q, mu_p=0.0, logvar_p=0.0: ref.gaussian_kl(mu_q, logvar_q)),
    Mistake("kl_swapped", "gaussian_kl",
            "It looks like q and p are swapped, i.e. KL(p || q) was computed: the KL is not "
            "symmetric.",
            _kl_prior_swapped),
)

# ------------------------------------------------------------------- reparameterize
_REPARAM = (
    Mistake("reparam_std_is_exp_logvar", "reparameterize",
            "It looks like the noise is scaled by exp(logvar): the standard deviation is "
            "exp(logvar / 2)."),
    Mistake("reparam_no_noise", "reparameterize",
            "It looks like z = mu: no noise is added, so z is not a sample."),
    Mistake("reparam_shared_noise", "reparameterize",
            "It looks like one eps is shared by the whole batch: draw eps with the shape of mu "
            "(e.g. torch.randn_like)."),
    Mistake("reparam_no_gradient", "reparameterize",
            "It looks like z carries no gradient to mu and logvar (torch.normal, .sample() or a "
            "detach): build z = mu + std * eps from the inputs."),
    Mistake("reparam_not_torch_rng", "reparameterize",
            "It looks like eps does not come from torch's random generator, so torch.manual_seed "
            "does not make it repeatable: draw it with torch.randn_like or torch.randn."),
)

# --------------------------------------------------------- bernoulli_log_likelihood
def _naive_log_sigmoid(x, logits):
    probs = torch.sigmoid(logits)
    return (x * torch.log(probs) + (1 - x) * torch.log(1 - probs)).sum(dim=-1)


def _clamped_bce(x, logits):
    x, probs = torch.broadcast_tensors(x, torch.sigmoid(logits))
    return -F.binary_cross_entropy(probs, x, reduction="none").sum(dim=-1)


_BLL = (
    Mistake("bll_mean_not_sum", "bernoulli_log_likelihood",
            "It looks like the log-likelihood is averaged over the pixels: sum it over the last "
            "dimension instead.",
            lambda x, logits: ref.bernoulli_log_likelihood(x, logits) / _last_dim(x, logits)),
    Mistake("bll_sign", "bernoulli_log_likelihood",
            "It looks like the sign is flipped: that is the binary cross-entropy, while "
            "log p(x | z) of binary pixels is never positive.",
            lambda x, logits: -ref.bernoulli_log_likelihood(x, logits)),
    Mistake("bll_logits_as_probs", "bernoulli_log_likelihood",
            "It looks like the logits were used as probabilities: the probability of a pixel "
            "being 1 is sigmoid(logits).",
            # students who notice the nan clamp the "probabilities", usually at 1e-6
            lambda x, logits: ref.bernoulli_log_likelihood(x, torch.logit(logits, eps=1e-6))),
    Mistake("bll_double_sigmoid", "bernoulli_log_likelihood",
            "It looks like the sigmoid is applied twice (e.g. BCE-with-logits on "
            "sigmoid(logits)): the logits go into the formula as they are.",
            lambda x, logits: ref.bernoulli_log_likelihood(x, torch.sigmoid(logits))),
    Mistake("naive_log_sigmoid", "bernoulli_log_likelihood",
            "It looks like log(sigmoid(logits)), log(1 - sigmoid(logits)) or "
            "log(1 + exp(logits)) is computed directly, which gives -inf or nan for large "
            "logits: rewrite it with a stable function such as F.softplus or "
            "F.binary_cross_entropy_with_logits.",
            _naive_log_sigmoid, nonfinite_when=_large_logits),
    Mistake("bll_clamped_bce", "bernoulli_log_likelihood",
            "It looks like F.binary_cross_entropy (or nn.BCELoss) is used on sigmoid(logits): it "
            "clamps each log at -100, so a logit of -500 for a pixel that is 1 gives -100 instead "
            "of -500. Use F.binary_cross_entropy_with_logits or F.softplus on the logits.",
            _clamped_bce),
)

# ------------------------------------------------------------------------------ elbo
_ELBO = (
    Mistake("elbo_kl_added", "elbo",
            "It looks like the KL term is added instead of subtracted.",
            lambda x, logits, mu, logvar, beta=1.0: ref.elbo(x, logits, mu, logvar, -beta)),
    Mistake("elbo_beta_ignored", "elbo",
            "It looks like beta is ignored: the KL term must be multiplied by beta.",
            lambda x, logits, mu, logvar, beta=1.0: ref.elbo(x, logits, mu, logvar)),
    Mistake("elbo_beta_on_likelihood", "elbo",
            "It looks like beta multiplies the log-likelihood instead of the KL term.",
            lambda x, logits, mu, logvar, beta=1.0:
                beta * ref.bernoulli_log_likelihood(x, logits) - ref.gaussian_kl(mu, logvar)),
    Mistake("elbo_negated", "elbo",
            "It looks like the negative ELBO (the training loss) is returned: the ELBO is the "
            "log-likelihood minus beta times the KL.",
            lambda *a, **k: -ref.elbo(*a, **k)),
    Mistake("elbo_likelihood_mean_over_pixels", "elbo",
            "It looks like the reconstruction term is averaged over the pixels while the KL is "
            "summed (pytorch/examples #234), which gives the KL x_dim times its weight: sum "
            "log p(x | z) over the pixels.",
            lambda x, logits, mu, logvar, beta=1.0: ref.bernoulli_log_likelihood(x, logits)
                / _last_dim(x, logits) - beta * ref.gaussian_kl(mu, logvar)),
    Mistake("elbo_mean_over_batch", "elbo",
            "It looks like the ELBO is averaged over the batch: return one value per example "
            "(no reduction).",
            lambda *a, **k: ref.elbo(*a, **k).mean()),
    Mistake("elbo_sum_over_batch", "elbo",
            "It looks like the ELBO is summed over the batch: return one value per example "
            "(no reduction).",
            lambda *a, **k: ref.elbo(*a, **k).sum()),
)

# -------------------------------------------------------------- gaussian_log_density
_GLD = (
    Mistake("gld_missing_constant", "gaussian_log_density",
            "It looks like the -log(2 pi) / 2 constant of each coordinate is missing.",
            lambda z, mu, logvar: ref.gaussian_log_density(z, mu, logvar)
                + _last_dim(z, mu, logvar) * math.log(2 * math.pi) / 2),
    Mistake("gld_std_for_logvar", "gaussian_log_density",
            "It looks like exp(logvar) was used as the standard deviation: the variance is "
            "exp(logvar), so the standard deviation is exp(logvar / 2).",
            lambda z, mu, logvar: ref.gaussian_log_density(z, mu, 2 * logvar)),
    Mistake("gld_missing_half", "gaussian_log_density",
            "It looks like the 1/2 in front of the squared term (z - mu)^2 / exp(logvar) is "
            "missing.",
            # doubling the squared distance is the same as dropping its 1/2
            lambda z, mu, logvar:
                ref.gaussian_log_density(mu + math.sqrt(2) * (z - mu), mu, logvar)),
    Mistake("gld_missing_log_det", "gaussian_log_density",
            "It looks like the -logvar / 2 term of each coordinate (the log of the normalising "
            "1 / standard deviation) is missing.",
            lambda z, mu, logvar: ref.gaussian_log_density(z, mu, logvar)
                + (0.5 * torch.broadcast_tensors(logvar, z, mu)[0]).sum(dim=-1)),
    Mistake("gld_sign", "gaussian_log_density",
            "It looks like the sign is flipped: that is the negative log-density.",
            lambda z, mu, logvar: -ref.gaussian_log_density(z, mu, logvar)),
    Mistake("gld_mean_over_dims", "gaussian_log_density",
            "It looks like the log-density is averaged over the coordinates: sum it over the "
            "last dimension instead.",
            lambda z, mu, logvar:
                ref.gaussian_log_density(z, mu, logvar) / _last_dim(z, mu, logvar)),
)

# ------------------------------------------------------------------------ iwae_bound
def _iwae_q_p_swapped(x, logits, z, mu, logvar):
    log_ratio = ref.gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)) \
        - ref.gaussian_log_density(z, mu, logvar)  # log p(z) - log q(z | x), (K, batch)
    log_weights = _log_weights(x, logits, z, mu, logvar) - 2 * log_ratio
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


_IWAE = (
    Mistake("iwae_mean_of_log_weights", "iwae_bound",
            "It looks like the log-weights are averaged over the K samples, which gives the "
            "ELBO: the bound is the log of the mean of the weights (use torch.logsumexp).",
            lambda x, logits, z, mu, logvar: _log_weights(x, logits, z, mu, logvar).mean(dim=0)),
    Mistake("iwae_missing_log_k", "iwae_bound",
            "It looks like the -log K is missing: the bound takes the mean of the K weights "
            "inside the log, not their sum.",
            lambda x, logits, z, mu, logvar:
                torch.logsumexp(_log_weights(x, logits, z, mu, logvar), dim=0)),
    Mistake("iwae_sum_of_log_weights", "iwae_bound",
            "It looks like the log-weights are summed over the K samples: the bound is the log "
            "of the mean of the weights (use torch.logsumexp).",
            lambda x, logits, z, mu, logvar: _log_weights(x, logits, z, mu, logvar).sum(dim=0)),
    Mistake("iwae_q_p_swapped", "iwae_bound",
            "It looks like the weights use q(z | x) / p(z) instead of p(z) / q(z | x).",
            _iwae_q_p_swapped),
    Mistake("iwae_logsumexp_over_batch", "iwae_bound",
            "It looks like the logsumexp runs over the batch axis: the K samples are on the "
            "first axis (dim=0).",
            lambda x, logits, z, mu, logvar:
                torch.logsumexp(_log_weights(x, logits, z, mu, logvar), dim=-1)
                - math.log(z.shape[0])),
    Mistake("iwae_naive_log_mean_exp", "iwae_bound",
            "It looks like the log-weights are exponentiated before averaging, which underflows "
            "to 0 when they are around -1e4: use torch.logsumexp (and a bernoulli_log_likelihood "
            "that stays finite for large logits).",
            lambda x, logits, z, mu, logvar:
                torch.log(torch.exp(_log_weights(x, logits, z, mu, logvar)).mean(dim=0)),
            nonfinite_when=_always),
)

# ------------------------------------------------------------------------------- VAE
_VAE = (
    Mistake("vae_decoder_outputs_probabilities", "VAE",
            "It looks like decode returns probabilities (e.g. a final sigmoid): it must return "
            "logits, which take any real value."),
    Mistake("vae_sample_not_prior", "VAE",
            "It looks like sample does not decode z drawn from the prior N(0, I): draw z with "
            "torch.randn(n, z_dim)."),
    Mistake("vae_forward_no_sampling", "VAE",
            "It looks like forward decodes mu instead of a sample: draw z with "
            "reparameterize(mu, logvar)."),
    Mistake("vae_decode_drops_leading_dims", "VAE",
            "It looks like decode only handles 2-D input: it must keep every leading axis, "
            "(..., z_dim) -> (..., x_dim)."),
)

MISTAKES: tuple[Mistake, ...] = _KL + _REPARAM + _BLL + _ELBO + _GLD + _IWAE + _VAE

_REFERENCE: dict[str, Callable[..., Tensor]] = {
    "gaussian_kl": ref.gaussian_kl,
    "bernoulli_log_likelihood": ref.bernoulli_log_likelihood,
    "elbo": ref.elbo,
    "gaussian_log_density": ref.gaussian_log_density,
    "iwae_bound": ref.iwae_bound,
}


def mistakes_for(problem: str) -> tuple[Mistake, ...]:
    """The recognised mistakes of one problem, in the order `recognise` tries them."""
    if problem not in PROBLEM_POINTS:
        raise ValueError(f"unknown problem {problem!r}; expected one of {list(PROBLEM_POINTS)}")
    return tuple(m for m in MISTAKES if m.problem == problem)


def _close(a: Tensor, b: Tensor, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False)


def _evaluate(fn: Callable[..., Tensor], args: tuple, kwargs: dict) -> Tensor | None:
    """fn(*args, **kwargs) as a detached float64 tensor, or None where it fails."""
    try:
        with torch.no_grad():
            out = fn(*args, **kwargs)
    except Exception:  # a mistake that does not apply to these arguments
        return None
    return out.detach().double().cpu() if isinstance(out, Tensor) else None


def recognise(problem: str, got: Tensor, args: tuple, kwargs: dict, *,
              rtol: float = 1e-4, atol: float = 1e-5) -> Mistake | None:
    """The first mistake of `problem` whose output on (args, kwargs) matches `got`, else None.

    A mistake whose output equals the reference's on these arguments is skipped (it cannot
    be told apart from a correct answer), and so is the case of a correct `got`.
    """
    candidates = mistakes_for(problem)
    if problem not in _REFERENCE or not isinstance(got, Tensor):
        return None
    got64 = got.detach().double().cpu()
    expected = _evaluate(_REFERENCE[problem], args, kwargs)
    if expected is None or _close(got64, expected, rtol, atol):
        return None
    for mistake in candidates:
        if mistake.wrong is None:
            continue
        wrong = _evaluate(mistake.wrong, args, kwargs)
        if wrong is None or _close(wrong, expected, rtol, atol):
            continue
        if _close(wrong, got64, rtol, atol):
            return mistake
    if got64.shape == expected.shape and bool((~got64.isfinite() & expected.isfinite()).any()):
        for mistake in candidates:
            if mistake.nonfinite_when is not None and mistake.nonfinite_when(*args, **kwargs):
                return mistake
    return None
