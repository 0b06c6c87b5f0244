"""The catalogue: realistic student submissions, written as patches of the reference module.

Each `Variant` replaces one or more top-level definitions of `solutions/vae.py` with new
source; `build_source` applies the patch, so no submission is a hand-kept copy of the
reference. `MISTAKES` holds single-function mistakes (each changes exactly one contract
problem, the one that must lose points); `CORRECT` holds submissions written differently
that must get full marks. Sources of mistakes are the public threads listed in
`ANCHORS.md` ("Realistic mistakes seen in public code").

A mistake with a `Hint` is one the grader recognises and names in its feedback: this file is
the one place a mistake is written. The mistake's code is how a FUNCTION problem's mistake is
recognised (`autograder/mistakes.py` runs it on the student's input and compares), the visible
checks' stored outputs of mistakes come from it (`autograder/check_values.py`), and `vae-assignment
validate` grades it as a submission (its hint must be named). The hidden tests of a SAMPLER or
MODEL problem recognise its mistakes themselves and look the hint up by code.

A course adds its entries with `catalogued(...)` in its problem's section, above the end of
the file, where `MISTAKES` and `CORRECT` are put in contract order.
"""
from __future__ import annotations

import ast
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from assignment.contract import PROBLEMS

REFERENCE_PATH = Path(__file__).resolve().parents[1] / "solutions" / "vae.py"


@dataclass(frozen=True)
class Hint:
    """How the grader names a recognised mistake in its feedback."""
    code: str                      # stable id kept in every record, snake_case, e.g. "kl_missing_half"
    text: str                      # one teaching sentence for the student
    # A FUNCTION problem's result that is non-finite where the reference's is finite is put
    # down to this mistake when nonfinite_when(*args, **kwargs) is true (-inf and nan come in
    # many forms, so they are not compared).
    nonfinite_when: Callable[..., bool] | None = None


@dataclass(frozen=True)
class Variant:
    name: str                      # snake_case, unique, e.g. "kl_missing_half"
    problem: str | None            # the contract problem that must lose points; None if correct
    description: str               # one line, with the public source of the mistake if known
    replaces: Mapping[str, str]    # name in solutions/vae.py ("elbo", "VAE.encode") -> its new source
    extra: str = ""                # top-level code appended (helpers, imports, prints)
    hint: Hint | None = None       # how the grader names this mistake; None: not named


_entries: list[Variant] = []


def catalogued(*variants: Variant) -> None:
    """Add entries to the catalogue."""
    _entries.extend(variants)


def _src(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def reference_source() -> str:
    return REFERENCE_PATH.read_text()


def reference_signature(name: str) -> str:
    """The decorators and `def` line(s) of the reference's top-level function `name`."""
    source = reference_source()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return "\n".join(source.splitlines()[start - 1:node.body[0].lineno - 1]) + "\n"
    raise KeyError(f"{REFERENCE_PATH} has no top-level function {name!r}")


def _mistake(name: str, problem: str, description: str, body: str, hint: str | Hint | None = None) -> Variant:
    """A mistake in the function `problem`: its reference signature with `body`. A `hint` given
    as text is named by the variant's own name as its code."""
    source = reference_signature(problem) + textwrap.indent(_src(body), "    ")
    hint = Hint(name, hint) if isinstance(hint, str) else hint
    return Variant(name, problem, description, {problem: source}, hint=hint)


# ---------------------------------------------------------------------------- gaussian_kl
catalogued(
    _mistake(
        "kl_missing_half", "gaussian_kl",
        "closed-form KL without the factor 1/2 (PyTorch-VAE #69)",
        """
            logvar_p = torch.as_tensor(logvar_p)
            kl = (logvar_p - logvar_q
                  + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)
            return kl.sum(dim=-1)
        """,
        hint="It looks like the 1/2 in front of the KL is missing.",
    ),
    _mistake(
        "kl_std_for_logvar", "gaussian_kl",
        "exp(logvar) used as the std, so the variance is exp(2 logvar) (keras #3283 in the KL)",
        """
            logvar_p = torch.as_tensor(logvar_p)
            std_q, std_p = torch.exp(logvar_q), torch.exp(logvar_p)
            kl = (torch.log(std_p / std_q)
                  + (std_q ** 2 + (mu_q - mu_p) ** 2) / (2 * std_p ** 2) - 0.5)
            return kl.sum(dim=-1)
        """,
        hint="It looks like exp(logvar) was used as the standard deviation: the variance is "
             "exp(logvar), so the standard deviation is exp(logvar / 2).",
    ),
    _mistake(
        "kl_logvar_as_variance", "gaussian_kl",
        "logvar taken for the variance itself: log(var_p) - log(var_q) with var = logvar (no hint: "
        "its KL is nan for every negative logvar and for the default prior, so no test could name it)",
        """
            var_q, var_p = logvar_q, torch.as_tensor(logvar_p)
            kl = 0.5 * (torch.log(var_p) - torch.log(var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0)
            return kl.sum(dim=-1)
        """,
    ),
    _mistake(
        "kl_logvar_as_std", "gaussian_kl",
        "logvar taken for the standard deviation: the variance is logvar ** 2",
        """
            var_q, var_p = logvar_q ** 2, torch.as_tensor(logvar_p) ** 2
            kl = 0.5 * (torch.log(var_p) - torch.log(var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0)
            return kl.sum(dim=-1)
        """,
        hint="It looks like logvar was used as the standard deviation: it is the log of the "
             "variance, so the standard deviation is exp(logvar / 2).",
    ),
    _mistake(
        "kl_sign", "gaussian_kl",
        "KL with its sign flipped (pytorch/examples #824, FluxML model-zoo #147)",
        """
            logvar_p = torch.as_tensor(logvar_p)
            kl = 0.5 * (logvar_q - logvar_p + 1.0
                        - (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p))
            return kl.sum(dim=-1)
        """,
        hint="It looks like the sign of the KL is flipped: KL(q || p) is never negative.",
    ),
    _mistake(
        "kl_mean_not_sum", "gaussian_kl",
        "KL averaged over the latent dimensions instead of summed (keras-io #270, keras-molecules #59)",
        """
            logvar_p = torch.as_tensor(logvar_p)
            kl = 0.5 * (logvar_p - logvar_q
                        + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)
            return kl.mean(dim=-1)
        """,
        hint="It looks like the KL is averaged over the latent dimensions: sum it over the last "
             "dimension instead.",
    ),
    _mistake(
        "kl_per_dimension", "gaussian_kl",
        "returns the per-coordinate KL: the sum over the last dimension is missing",
        """
            logvar_p = torch.as_tensor(logvar_p)
            return 0.5 * (logvar_p - logvar_q
                          + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)
        """,
        hint="It looks like the per-coordinate KL terms are not summed over the last dimension.",
    ),
    _mistake(
        "kl_prior_ignored", "gaussian_kl",
        "the prior arguments are accepted but ignored: always KL against N(0, I)",
        """
            kl = -0.5 * (1 + logvar_q - mu_q ** 2 - torch.exp(logvar_q))
            return kl.sum(dim=-1)
        """,
        hint="It looks like mu_p and logvar_p are ignored (the prior is always N(0, I)): use them "
             "in the formula.",
    ),
    _mistake(
        "kl_swapped", "gaussian_kl",
        "KL(p || q) computed instead of KL(q || p)",
        """
            logvar_p = torch.as_tensor(logvar_p)
            kl = 0.5 * (logvar_q - logvar_p
                        + (torch.exp(logvar_p) + (mu_p - mu_q) ** 2) / torch.exp(logvar_q) - 1.0)
            return kl.sum(dim=-1)
        """,
        hint="It looks like q and p are swapped, i.e. KL(p || q) was computed: the KL is not "
             "symmetric.",
    ),
    _mistake(
        "kl_hardcoded_batch_float32", "gaussian_kl",
        "loop over latent dims into torch.zeros(batch): breaks for 3-D input, returns float32 for float64",
        """
            logvar_p = torch.as_tensor(logvar_p)
            total = torch.zeros(mu_q.shape[0])
            for j in range(mu_q.shape[-1]):
                lp = logvar_p[..., j] if logvar_p.dim() > 0 else logvar_p
                mp = mu_p[..., j] if isinstance(mu_p, Tensor) and mu_p.dim() > 0 else mu_p
                total += 0.5 * (lp - logvar_q[:, j]
                                + (torch.exp(logvar_q[:, j]) + (mu_q[:, j] - mp) ** 2) / torch.exp(lp)
                                - 1.0)
            return total
        """,
    ),
    _mistake(
        "kl_clamped_logvar", "gaussian_kl",
        "log-variances clamped to [-30, 20] first, as latent-diffusion's DiagonalGaussianDistribution does",
        """
            logvar_q = torch.clamp(logvar_q, -30.0, 20.0)
            logvar_p = torch.clamp(torch.as_tensor(logvar_p, dtype=logvar_q.dtype), -30.0, 20.0)
            kl = 0.5 * (logvar_p - logvar_q
                        + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)
            return kl.sum(dim=-1)
        """,
    ),
    _mistake(
        "kl_placeholder_zeros", "gaussian_kl",
        "the placeholder left in: zeros of the right shape, whatever the arguments",
        """
            shape = torch.broadcast_shapes(mu_q.shape, logvar_q.shape)
            return torch.zeros(shape[:-1], dtype=mu_q.dtype)
        """,
    ),
)

# ------------------------------------------------------------------------- reparameterize
_NO_GRADIENT = Hint("reparam_no_gradient",
                    "It looks like z carries no gradient to mu and logvar (torch.normal, .sample() or a "
                    "detach): build z = mu + std * eps from the inputs.")

catalogued(
    _mistake(
        "reparam_std_is_exp_logvar", "reparameterize",
        "std = exp(logvar) instead of exp(logvar / 2) (keras #3283, ibp_vae #3, world-models #13)",
        """
            std = torch.exp(logvar)
            eps = torch.randn_like(std)
            return mu + std * eps
        """,
        hint="It looks like the noise is scaled by exp(logvar): the standard deviation is "
             "exp(logvar / 2).",
    ),
    _mistake(
        "reparam_no_noise", "reparameterize",
        "returns z = mu: no noise at all (eps unused, keras PR #4211)",
        """
            return mu
        """,
        hint="It looks like z = mu: no noise is added, so z is not a sample.",
    ),
    _mistake(
        "reparam_shared_noise", "reparameterize",
        "one eps of shape (z_dim,) shared by every example of the batch",
        """
            std = torch.exp(0.5 * logvar)
            eps = torch.randn(mu.shape[-1])
            return mu + std * eps
        """,
        hint="It looks like one eps is shared by the whole batch: draw eps with the shape of mu "
             "(e.g. torch.randn_like).",
    ),
    _mistake(
        "reparam_torch_normal", "reparameterize",
        "z = torch.normal(mu, std): not reparameterised, gradients to mu and logvar are zero (pytorch #4620)",
        """
            std = torch.exp(0.5 * logvar)
            return torch.normal(mu, std)
        """,
        hint=_NO_GRADIENT,
    ),
    _mistake(
        "reparam_distribution_sample", "reparameterize",
        "Normal(mu, std).sample() instead of rsample(): no gradient (pytorch #4620)",
        """
            std = torch.exp(0.5 * logvar)
            return torch.distributions.Normal(mu, std).sample()
        """,
        hint=_NO_GRADIENT,
    ),
    _mistake(
        "reparam_numpy_noise", "reparameterize",
        "eps drawn with numpy: not repeatable under torch.manual_seed",
        """
            import numpy as np
            std = torch.exp(0.5 * logvar)
            eps = torch.from_numpy(np.random.randn(*std.shape)).to(std)
            return mu + std * eps
        """,
        hint=Hint("reparam_not_torch_rng",
                  "It looks like eps does not come from torch's random generator, so torch.manual_seed "
                  "does not make it repeatable: draw it with torch.randn_like or torch.randn."),
    ),
    _mistake(
        "reparam_uniform_noise", "reparameterize",
        "eps from torch.rand_like (uniform on [0, 1)) instead of N(0, I) (keras PR #4211 flavour)",
        """
            std = torch.exp(0.5 * logvar)
            eps = torch.rand_like(std)
            return mu + std * eps
        """,
    ),
    _mistake(
        "reparam_detached", "reparameterize",
        "mu and std detached before sampling: no gradient reaches the encoder",
        """
            std = torch.exp(0.5 * logvar).detach()
            eps = torch.randn_like(std)
            return mu.detach() + std * eps
        """,
        hint=_NO_GRADIENT,
    ),
    _mistake(
        "reparam_noise_like_std", "reparameterize",
        "eps = torch.randn_like(std) (pytorch/examples): eps has logvar's shape only, so a batch axis "
        "that only mu has shares one noise",
        """
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std
        """,
    ),
    _mistake(
        "reparam_clamped_logvar", "reparameterize",
        "log-variance clamped to [-30, 20] before sampling, as latent-diffusion's DiagonalGaussianDistribution does",
        """
            logvar = torch.clamp(logvar, -30.0, 20.0)
            mu, logvar = torch.broadcast_tensors(mu, logvar)
            return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        """,
    ),
    _mistake(
        "reparam_returns_eps", "reparameterize",
        "returns the noise eps itself: the shift by mu and the scaling by the std are missing",
        """
            mu, logvar = torch.broadcast_tensors(mu, logvar)
            return torch.randn_like(mu)
        """,
    ),
)

# --------------------------------------------------------------- bernoulli_log_likelihood
def _large_logits(x: object, logits: object) -> bool:
    """Logits this large already saturate sigmoid in float32 (1 - sigmoid(17) == 0), so
    log(sigmoid(.)) and log(1 - sigmoid(.)) can give -inf there."""
    return isinstance(logits, torch.Tensor) and bool(logits.detach().abs().max() > 15.0)


catalogued(
    _mistake(
        "bll_mean_not_sum", "bernoulli_log_likelihood",
        "log-likelihood averaged over pixels (mean-reduced BCE, pytorch/examples #234, #817)",
        """
            return (x * logits - F.softplus(logits)).mean(dim=-1)
        """,
        hint="It looks like the log-likelihood is averaged over the pixels: sum it over the last "
             "dimension instead.",
    ),
    _mistake(
        "bll_sign", "bernoulli_log_likelihood",
        "returns the BCE (a negative log-likelihood) instead of the log-likelihood",
        """
            return (F.softplus(logits) - x * logits).sum(dim=-1)
        """,
        hint="It looks like the sign is flipped: that is the binary cross-entropy, while "
             "log p(x | z) of binary pixels is never positive.",
    ),
    _mistake(
        "bll_logits_as_probs", "bernoulli_log_likelihood",
        "logits treated as probabilities: F.binary_cross_entropy on clamped logits",
        """
            probs = logits.clamp(1e-6, 1 - 1e-6)
            x, probs = torch.broadcast_tensors(x, probs)
            return -F.binary_cross_entropy(probs, x, reduction="none").sum(dim=-1)
        """,
        hint="It looks like the logits were used as probabilities: the probability of a pixel "
             "being 1 is sigmoid(logits).",
    ),
    _mistake(
        "bll_double_sigmoid", "bernoulli_log_likelihood",
        "sigmoid applied before BCE-with-logits, so the sigmoid is taken twice (daisyRec #15)",
        """
            probs = torch.sigmoid(logits)
            x, probs = torch.broadcast_tensors(x, probs)
            return -F.binary_cross_entropy_with_logits(probs, x, reduction="none").sum(dim=-1)
        """,
        hint="It looks like the sigmoid is applied twice (e.g. BCE-with-logits on "
             "sigmoid(logits)): the logits go into the formula as they are.",
    ),
    _mistake(
        "bll_naive_log_sigmoid", "bernoulli_log_likelihood",
        "x log sigmoid(l) + (1 - x) log(1 - sigmoid(l)): -inf / nan at extreme logits (kvfrans VAE #5)",
        """
            p = torch.sigmoid(logits)
            return (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(dim=-1)
        """,
        hint=Hint("naive_log_sigmoid",
                  "It looks like log(sigmoid(logits)), log(1 - sigmoid(logits)) or "
                  "log(1 + exp(logits)) is computed directly, which gives -inf or nan for large "
                  "logits: rewrite it with a stable function such as F.softplus or "
                  "F.binary_cross_entropy_with_logits.",
                  nonfinite_when=_large_logits),
    ),
    _mistake(
        "bll_clamped_bce", "bernoulli_log_likelihood",
        "F.binary_cross_entropy on sigmoid(logits): each log is clamped at -100 (nn.BCELoss does the same)",
        """
            x, probs = torch.broadcast_tensors(x, torch.sigmoid(logits))
            return -F.binary_cross_entropy(probs, x, reduction="none").sum(dim=-1)
        """,
        hint="It looks like F.binary_cross_entropy (or nn.BCELoss) is used on sigmoid(logits): it "
             "clamps each log at -100, so a logit of -500 for a pixel that is 1 gives -100 instead "
             "of -500. Use F.binary_cross_entropy_with_logits or F.softplus on the logits.",
    ),
    _mistake(
        "bll_expand_x", "bernoulli_log_likelihood",
        "x.expand_as(logits) before BCE-with-logits: works when logits carry the sample axis, "
        "fails when x does",
        """
            target = x.expand_as(logits)
            return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=-1)
        """,
    ),
)

# ------------------------------------------------------------------------------- elbo
catalogued(
    _mistake(
        "elbo_kl_added", "elbo",
        "the KL term added instead of subtracted",
        """
            return bernoulli_log_likelihood(x, logits) + beta * gaussian_kl(mu, logvar)
        """,
        hint="It looks like the KL term is added instead of subtracted.",
    ),
    _mistake(
        "elbo_beta_ignored", "elbo",
        "beta accepted but never used",
        """
            return bernoulli_log_likelihood(x, logits) - gaussian_kl(mu, logvar)
        """,
        hint="It looks like beta is ignored: the KL term must be multiplied by beta.",
    ),
    _mistake(
        "elbo_beta_on_likelihood", "elbo",
        "beta multiplies the reconstruction term instead of the KL",
        """
            return beta * bernoulli_log_likelihood(x, logits) - gaussian_kl(mu, logvar)
        """,
        hint="It looks like beta multiplies the log-likelihood instead of the KL term.",
    ),
    _mistake(
        "elbo_negated", "elbo",
        "returns the training loss, the negative ELBO",
        """
            return -(bernoulli_log_likelihood(x, logits) - beta * gaussian_kl(mu, logvar))
        """,
        hint="It looks like the negative ELBO (the training loss) is returned: the ELBO is the "
             "log-likelihood minus beta times the KL.",
    ),
    _mistake(
        "elbo_likelihood_mean_over_pixels", "elbo",
        "reconstruction term averaged over the pixels, KL summed (pytorch/examples #234)",
        """
            return bernoulli_log_likelihood(x, logits) / x.shape[-1] - beta * gaussian_kl(mu, logvar)
        """,
        hint="It looks like the reconstruction term is averaged over the pixels while the KL is "
             "summed (pytorch/examples #234), which gives the KL x_dim times its weight: sum "
             "log p(x | z) over the pixels.",
    ),
    _mistake(
        "elbo_mean_over_batch", "elbo",
        "averaged over the batch: returns a scalar (pytorch/examples #234 flavour)",
        """
            return (bernoulli_log_likelihood(x, logits) - beta * gaussian_kl(mu, logvar)).mean()
        """,
        hint="It looks like the ELBO is averaged over the batch: return one value per example "
             "(no reduction).",
    ),
    _mistake(
        "elbo_sum_over_batch", "elbo",
        "summed over the batch: returns a scalar",
        """
            return (bernoulli_log_likelihood(x, logits) - beta * gaussian_kl(mu, logvar)).sum()
        """,
        hint="It looks like the ELBO is summed over the batch: return one value per example "
             "(no reduction).",
    ),
    _mistake(
        "elbo_kl_detached", "elbo",
        "the KL term detached (logged as a number and subtracted): right values, no gradient to mu and logvar",
        """
            kl = gaussian_kl(mu, logvar).detach()
            return bernoulli_log_likelihood(x, logits) - beta * kl
        """,
    ),
)

# ----------------------------------------------------------------- gaussian_log_density
catalogued(
    _mistake(
        "gld_missing_constant", "gaussian_log_density",
        "the -log(2 pi) / 2 constant of each coordinate left out",
        """
            return (-0.5 * (logvar + (z - mu) ** 2 / torch.exp(logvar))).sum(dim=-1)
        """,
        hint="It looks like the -log(2 pi) / 2 constant of each coordinate is missing.",
    ),
    _mistake(
        "gld_std_for_logvar", "gaussian_log_density",
        "exp(logvar) used as the std (keras #3283 in the density)",
        """
            std = torch.exp(logvar)
            log_density = -0.5 * math.log(2 * math.pi) - torch.log(std) - (z - mu) ** 2 / (2 * std ** 2)
            return log_density.sum(dim=-1)
        """,
        hint="It looks like exp(logvar) was used as the standard deviation: the variance is "
             "exp(logvar), so the standard deviation is exp(logvar / 2).",
    ),
    _mistake(
        "gld_missing_half", "gaussian_log_density",
        "the 1/2 of the quadratic term left out",
        """
            log_density = -0.5 * (math.log(2 * math.pi) + logvar) - (z - mu) ** 2 / torch.exp(logvar)
            return log_density.sum(dim=-1)
        """,
        hint="It looks like the 1/2 in front of the squared term (z - mu)^2 / exp(logvar) is "
             "missing.",
    ),
    _mistake(
        "gld_missing_log_det", "gaussian_log_density",
        "the -logvar / 2 term (the normalising 1 / std) left out",
        """
            return (-0.5 * (math.log(2 * math.pi) + (z - mu) ** 2 / torch.exp(logvar))).sum(dim=-1)
        """,
        hint="It looks like the -logvar / 2 term of each coordinate (the log of the normalising "
             "1 / standard deviation) is missing.",
    ),
    _mistake(
        "gld_sign", "gaussian_log_density",
        "returns the negative log-density",
        """
            return (0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / torch.exp(logvar))).sum(dim=-1)
        """,
        hint="It looks like the sign is flipped: that is the negative log-density.",
    ),
    _mistake(
        "gld_mean_over_dims", "gaussian_log_density",
        "log-density averaged over the coordinates instead of summed",
        """
            log_density = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / torch.exp(logvar))
            return log_density.mean(dim=-1)
        """,
        hint="It looks like the log-density is averaged over the coordinates: sum it over the "
             "last dimension instead.",
    ),
)

# ---------------------------------------------------------------------------- iwae_bound
_IWAE_LOG_WEIGHTS = """
    zeros = torch.zeros_like(z)
    log_weights = (
        bernoulli_log_likelihood(x, logits)
        + gaussian_log_density(z, zeros, zeros)
        - gaussian_log_density(z, mu, logvar)
    )
"""


def _iwae(body: str, log_weights: str = _IWAE_LOG_WEIGHTS) -> str:
    """The body of an iwae_bound: its log-weights, then `body`."""
    return textwrap.dedent(log_weights).strip() + "\n" + textwrap.dedent(body).strip()


def _always(*args: object) -> bool:
    return True


catalogued(
    _mistake(
        "iwae_mean_of_log_weights", "iwae_bound",
        "mean of the log-weights (the K-sample ELBO) instead of log-mean-exp (generative-tf #1)",
        _iwae("""
            return log_weights.mean(dim=0)
        """),
        hint="It looks like the log-weights are averaged over the K samples, which gives the "
             "ELBO: the bound is the log of the mean of the weights (use torch.logsumexp).",
    ),
    _mistake(
        "iwae_missing_log_k", "iwae_bound",
        "logsumexp without the -log K (generative-tf #1, tfp #189)",
        _iwae("""
            return torch.logsumexp(log_weights, dim=0)
        """),
        hint="It looks like the -log K is missing: the bound takes the mean of the K weights "
             "inside the log, not their sum.",
    ),
    _mistake(
        "iwae_sum_of_log_weights", "iwae_bound",
        "sum of the log-weights over the K samples instead of log-mean-exp",
        _iwae("""
            return log_weights.sum(dim=0)
        """),
        hint="It looks like the log-weights are summed over the K samples: the bound is the log "
             "of the mean of the weights (use torch.logsumexp).",
    ),
    _mistake(
        "iwae_q_p_swapped", "iwae_bound",
        "log q(z | x) added and log p(z) subtracted: the weights are inverted in z",
        _iwae("""
            return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])
        """, log_weights="""
            zeros = torch.zeros_like(z)
            log_weights = (
                bernoulli_log_likelihood(x, logits)
                + gaussian_log_density(z, mu, logvar)
                - gaussian_log_density(z, zeros, zeros)
            )
        """),
        hint="It looks like the weights use q(z | x) / p(z) instead of p(z) / q(z | x).",
    ),
    _mistake(
        "iwae_logsumexp_over_batch", "iwae_bound",
        "logsumexp over the last axis, the batch, instead of the K samples on axis 0",
        _iwae("""
            return torch.logsumexp(log_weights, dim=-1) - math.log(z.shape[0])
        """),
        hint="It looks like the logsumexp runs over the batch axis: the K samples are on the "
             "first axis (dim=0).",
    ),
    _mistake(
        "iwae_naive_log_mean_exp", "iwae_bound",
        "log(mean(exp(w))): underflows to -inf when the log-weights are around -1e4",
        _iwae("""
            return torch.log(torch.exp(log_weights).mean(dim=0))
        """),
        hint=Hint("iwae_naive_log_mean_exp",
                  "It looks like the log-weights are exponentiated before averaging, which "
                  "underflows to 0 when they are around -1e4: use torch.logsumexp (and a "
                  "bernoulli_log_likelihood that stays finite for large logits).",
                  nonfinite_when=_always),
    ),
)

# --------------------------------------------------------------------------------- VAE
# Each VAE mistake is the reference class with one or two methods replaced ("VAE.encode").


def _vae_mistake(name: str, description: str, hint: Hint | None = None, **methods: str) -> Variant:
    replaces = {f"VAE.{method}": _src(source) for method, source in methods.items()}
    return Variant(name, "VAE", description, replaces, hint=hint)


catalogued(
    _vae_mistake(
        "vae_decoder_sigmoid",
        "decoder ends with a sigmoid, so probabilities are used as logits",
        decode="""
            def decode(self, z: Tensor) -> Tensor:
                return torch.sigmoid(self.decoder(z))
        """,
        hint=Hint("vae_decoder_outputs_probabilities",
                  "It looks like decode returns probabilities (e.g. a final sigmoid): it must return "
                  "logits, which take any real value."),
    ),
    _vae_mistake(
        "vae_softplus_logvar",
        "softplus on the log-variance head: logvar >= 0, so the posterior std is >= 1 (airc-rl-agent #43)",
        encode="""
            def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
                mu, h = self.encoder(x).chunk(2, dim=-1)
                return mu, F.softplus(h)
        """,
    ),
    _vae_mistake(
        "vae_sample_uniform",
        "sample() draws z from torch.rand (uniform on [0, 1)) instead of the prior N(0, I)",
        sample="""
            @torch.no_grad()
            def sample(self, n: int) -> Tensor:
                z = torch.rand(n, self.z_dim)
                return torch.sigmoid(self.decode(z))
        """,
        hint=Hint("vae_sample_not_prior",
                  "It looks like sample does not decode z drawn from the prior N(0, I): draw z with "
                  "torch.randn(n, z_dim)."),
    ),
    _vae_mistake(
        "vae_forward_no_sampling",
        "forward decodes z = mu: no sampling, the loss is not an ELBO (pytorch/examples PR #419)",
        forward="""
            def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
                mu, logvar = self.encode(x)
                return self.decode(mu), mu, logvar
        """,
        hint=Hint("vae_forward_no_sampling",
                  "It looks like forward decodes mu instead of a sample: draw z with "
                  "reparameterize(mu, logvar)."),
    ),
    _vae_mistake(
        "vae_sample_returns_logits",
        "sample() returns the decoder's logits, not Bernoulli means in [0, 1]",
        sample="""
            @torch.no_grad()
            def sample(self, n: int) -> Tensor:
                z = torch.randn(n, self.z_dim)
                return self.decode(z)
        """,
    ),
    _vae_mistake(
        "vae_blind_encoder",
        "encoder ignores its input: mu and logvar are a learned constant (the encoder of zeros)",
        encode="""
            def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
                mu, logvar = self.encoder(torch.zeros_like(x)).chunk(2, dim=-1)
                return mu, logvar
        """,
    ),
    _vae_mistake(
        "vae_decode_flattens",
        "decode does z.view(-1, z_dim) and never restores the leading dims: (K, B, z) gives (K*B, x)",
        decode="""
            def decode(self, z: Tensor) -> Tensor:
                z = z.view(-1, self.z_dim)
                return self.decoder(z)
        """,
        hint=Hint("vae_decode_drops_leading_dims",
                  "It looks like decode only handles 2-D input: it must keep every leading axis, "
                  "(..., z_dim) -> (..., x_dim)."),
    ),
)

# ----------------------------------------------------------------------------- correct
_CORRECT_DISTRIBUTIONS = Variant(
    "correct_torch_distributions", None,
    "the densities, KL and sampler written with torch.distributions (Normal, kl_divergence, "
    "Bernoulli(logits=...), rsample)",
    {
        "gaussian_kl": _src("""
            def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
                from torch.distributions import Normal, kl_divergence
                if not isinstance(mu_p, torch.Tensor):
                    mu_p = torch.tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
                if not isinstance(logvar_p, torch.Tensor):
                    logvar_p = torch.tensor(logvar_p, dtype=logvar_q.dtype, device=logvar_q.device)
                q = Normal(mu_q, torch.exp(0.5 * logvar_q), validate_args=False)
                p = Normal(mu_p, torch.exp(0.5 * logvar_p), validate_args=False)
                return kl_divergence(q, p).sum(-1)
        """),
        "reparameterize": _src("""
            def reparameterize(mu, logvar):
                from torch.distributions import Normal
                return Normal(mu, torch.exp(0.5 * logvar), validate_args=False).rsample()
        """),
        "bernoulli_log_likelihood": _src("""
            def bernoulli_log_likelihood(x, logits):
                from torch.distributions import Bernoulli
                # validate_args=False: x may hold grey levels in [0, 1], not only 0 and 1
                return Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)
        """),
        "gaussian_log_density": _src("""
            def gaussian_log_density(z, mu, logvar):
                from torch.distributions import Normal
                return Normal(mu, torch.exp(0.5 * logvar), validate_args=False).log_prob(z).sum(-1)
        """),
    },
)

_CORRECT_FLOAT64 = Variant(
    "correct_float64_inside", None,
    "every function computes in float64 and casts the result back to its inputs' dtype",
    {
        "gaussian_kl": _src("""
            def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
                dtype = _result_dtype(mu_q, logvar_q, mu_p, logvar_p)
                mq, lq = mu_q.double(), logvar_q.double()
                mp = torch.as_tensor(mu_p, device=mu_q.device).double()
                lp = torch.as_tensor(logvar_p, device=mu_q.device).double()
                kl = 0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1)
                return kl.sum(dim=-1).to(dtype)
        """),
        "reparameterize": _src("""
            def reparameterize(mu, logvar):
                dtype = _result_dtype(mu, logvar)
                shape = torch.broadcast_shapes(mu.shape, logvar.shape)
                eps = torch.randn(shape, dtype=torch.float64, device=mu.device)
                return (mu.double() + torch.exp(0.5 * logvar.double()) * eps).to(dtype)
        """),
        "bernoulli_log_likelihood": _src("""
            def bernoulli_log_likelihood(x, logits):
                dtype = _result_dtype(x, logits)
                l = logits.double()
                return (x.double() * l - F.softplus(l)).sum(dim=-1).to(dtype)
        """),
        "elbo": _src("""
            def elbo(x, logits, mu, logvar, beta=1.0):
                dtype = _result_dtype(x, logits, mu, logvar)
                rec = bernoulli_log_likelihood(x, logits).double()
                kl = gaussian_kl(mu, logvar).double()
                return (rec - beta * kl).to(dtype)
        """),
        "gaussian_log_density": _src("""
            def gaussian_log_density(z, mu, logvar):
                dtype = _result_dtype(z, mu, logvar)
                z, mu, logvar = z.double(), mu.double(), logvar.double()
                out = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar))
                return out.sum(dim=-1).to(dtype)
        """),
        "iwae_bound": _src("""
            def iwae_bound(x, logits, z, mu, logvar):
                dtype = _result_dtype(x, logits, z, mu, logvar)
                x, logits, z = x.double(), logits.double(), z.double()
                mu, logvar = mu.double(), logvar.double()
                log_w = (bernoulli_log_likelihood(x, logits)
                         + gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
                         - gaussian_log_density(z, mu, logvar))
                return (torch.logsumexp(log_w, dim=0) - math.log(z.shape[0])).to(dtype)
        """),
    },
    extra=_src("""
        def _result_dtype(*args):
            dtype = None
            for a in args:
                if isinstance(a, torch.Tensor):
                    dtype = a.dtype if dtype is None else torch.promote_types(dtype, a.dtype)
            return dtype
    """),
)

_CORRECT_ALGEBRA = Variant(
    "correct_alternative_algebra", None,
    "equivalent algebra: -1/2 sum(1 + log ratio - ...) KL, BCE-with-logits, manual log-sum-exp",
    {
        "gaussian_kl": _src("""
            def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
                if not torch.is_tensor(logvar_p):
                    logvar_p = torch.tensor(logvar_p, dtype=logvar_q.dtype, device=logvar_q.device)
                log_ratio = logvar_q - logvar_p
                return -0.5 * torch.sum(
                    1 + log_ratio - (mu_q - mu_p).pow(2) * torch.exp(-logvar_p) - log_ratio.exp(),
                    dim=-1,
                )
        """),
        "reparameterize": _src("""
            def reparameterize(mu, logvar):
                std = (0.5 * logvar).exp()
                eps = torch.randn(torch.broadcast_shapes(mu.shape, std.shape),
                                  dtype=std.dtype, device=std.device)
                return torch.addcmul(mu, std, eps)
        """),
        "bernoulli_log_likelihood": _src("""
            def bernoulli_log_likelihood(x, logits):
                dtype = torch.promote_types(x.dtype, logits.dtype)
                logits, x = torch.broadcast_tensors(logits.to(dtype), x.to(dtype))
                bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
                return -bce.sum(dim=-1)
        """),
        "elbo": _src("""
            def elbo(x, logits, mu, logvar, beta=1.0):
                kl = gaussian_kl(mu, logvar)
                reconstruction = bernoulli_log_likelihood(x, logits)
                return torch.sub(reconstruction, kl, alpha=beta)
        """),
        "gaussian_log_density": _src("""
            def gaussian_log_density(z, mu, logvar):
                scaled = (z - mu) * torch.exp(-0.5 * logvar)
                log_sqrt_2pi = 0.5 * math.log(2 * math.pi)
                return torch.sum(-0.5 * scaled ** 2 - 0.5 * logvar - log_sqrt_2pi, dim=-1)
        """),
        "iwae_bound": _src("""
            def iwae_bound(x, logits, z, mu, logvar):
                log_px_z = bernoulli_log_likelihood(x, logits)             # (K, B)
                log_pz = gaussian_log_density(z, 0 * z, 0 * z)
                log_qz = gaussian_log_density(z, mu, logvar)
                log_w = log_px_z + log_pz - log_qz
                m = log_w.max(dim=0, keepdim=True).values.detach()         # log-sum-exp trick
                return m.squeeze(0) + torch.log(torch.exp(log_w - m).mean(dim=0))
        """),
    },
)

_CORRECT_ELU = Variant(
    "correct_vae_elu_single_head", None,
    "VAE with one ELU hidden layer and a single linear head for both mu and logvar",
    {
        "VAE": _src("""
            class VAE(nn.Module):
                def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
                    super().__init__()
                    self.z_dim = z_dim
                    self.enc = nn.Sequential(nn.Linear(x_dim, hidden_dim), nn.ELU())
                    self.head = nn.Linear(hidden_dim, 2 * z_dim)
                    self.dec = nn.Sequential(nn.Linear(z_dim, hidden_dim), nn.ELU(),
                                             nn.Linear(hidden_dim, x_dim))

                def encode(self, x):
                    h = self.head(self.enc(x))
                    return h[..., :self.z_dim], h[..., self.z_dim:]

                def decode(self, z):
                    return self.dec(z)

                def forward(self, x):
                    mu, logvar = self.encode(x)
                    z = reparameterize(mu, logvar)
                    return self.decode(z), mu, logvar

                def sample(self, n):
                    with torch.no_grad():
                        z = torch.randn(n, self.z_dim)
                        return torch.sigmoid(self.decode(z))
        """),
    },
)

_CORRECT_CONV = Variant(
    "correct_vae_conv_encoder", None,
    "VAE with a small conv-net encoder (input padded to a square image, two 3x3 convs) "
    "and an MLP decoder",
    {
        "VAE": _src("""
            class VAE(nn.Module):
                def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
                    super().__init__()
                    self.x_dim, self.z_dim = x_dim, z_dim
                    self.side = math.ceil(math.sqrt(x_dim))        # 8 for the 8x8 digits
                    self.conv = nn.Sequential(
                        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Flatten(),
                    )
                    conv_out = 16 * ((self.side + 1) // 2) ** 2
                    self.fc = nn.Sequential(nn.Linear(conv_out, hidden_dim), nn.ReLU(),
                                            nn.Linear(hidden_dim, 2 * z_dim))
                    self.decoder = nn.Sequential(
                        nn.Linear(z_dim, hidden_dim), nn.ReLU(),
                        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                        nn.Linear(hidden_dim, x_dim),
                    )

                def encode(self, x):
                    pad = self.side * self.side - self.x_dim
                    img = F.pad(x, (0, pad)).reshape(-1, 1, self.side, self.side)
                    h = self.fc(self.conv(img)).reshape(*x.shape[:-1], 2 * self.z_dim)
                    mu, logvar = torch.chunk(h, 2, dim=-1)
                    return mu, logvar

                def decode(self, z):
                    return self.decoder(z)

                def forward(self, x):
                    mu, logvar = self.encode(x)
                    z = reparameterize(mu, logvar)
                    return self.decode(z), mu, logvar

                @torch.no_grad()
                def sample(self, n):
                    z = torch.randn(n, self.z_dim)
                    return self.decode(z).sigmoid()
        """),
    },
)

_CORRECT_CHATTY = Variant(
    "correct_with_prints_and_helpers", None,
    "extra helper functions, module-level prints, prints inside functions and a "
    "self.reparameterize method that calls the global reparameterize",
    {
        "bernoulli_log_likelihood": _src("""
            def bernoulli_log_likelihood(x, logits):
                # log sigmoid(l) and log(1 - sigmoid(l)) = log sigmoid(-l), both stable
                per_pixel = x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits)
                return per_pixel.sum(-1)
        """),
        "elbo": _src("""
            def elbo(x, logits, mu, logvar, beta=1.0):
                rec = bernoulli_log_likelihood(x, logits)
                kl = gaussian_kl(mu, logvar)
                if DEBUG:
                    print("rec", rec.mean().item(), "kl", kl.mean().item())
                return rec - beta * kl
        """),
        "gaussian_log_density": _src("""
            def gaussian_log_density(z, mu, logvar):
                print("gaussian_log_density called with shapes", tuple(z.shape), tuple(mu.shape))
                return log_normal_per_dim(z, mu, logvar).sum(-1)
        """),
        "iwae_bound": _src("""
            def iwae_bound(x, logits, z, mu, logvar):
                log_w = (bernoulli_log_likelihood(x, logits)
                         + gaussian_log_density(z, torch.zeros_like(mu), torch.zeros_like(logvar))
                         - gaussian_log_density(z, mu, logvar))
                print("log-weights:", log_w.shape)
                return log_mean_exp(log_w, dim=0)
        """),
        "VAE": _src("""
            class VAE(nn.Module):
                def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
                    super().__init__()
                    print(f"building VAE x_dim={x_dim} z_dim={z_dim} hidden_dim={hidden_dim}")
                    self.z_dim = z_dim
                    self.encoder = mlp(x_dim, hidden_dim, 2 * z_dim)
                    self.decoder = mlp(z_dim, hidden_dim, x_dim)

                def encode(self, x):
                    out = self.encoder(x)
                    return out[:, :self.z_dim], out[:, self.z_dim:]

                def reparameterize(self, mu, logvar):
                    return reparameterize(mu, logvar)

                def decode(self, z):
                    return self.decoder(z)

                def forward(self, x):
                    mu, logvar = self.encode(x)
                    z = self.reparameterize(mu, logvar)
                    return self.decode(z), mu, logvar

                def sample(self, n):
                    with torch.no_grad():
                        device = next(self.parameters()).device
                        return torch.sigmoid(self.decode(torch.randn(n, self.z_dim, device=device)))
        """),
    },
    extra=_src("""
        DEBUG = False
        print("my VAE solutions loaded, torch", torch.__version__)


        def log_sigmoid(t):
            return F.logsigmoid(t)


        def log_normal_per_dim(z, mu, logvar):
            return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())


        def log_mean_exp(t, dim):
            return torch.logsumexp(t, dim=dim) - math.log(t.shape[dim])


        def mlp(n_in, n_hidden, n_out):
            return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(),
                                 nn.Linear(n_hidden, n_hidden), nn.ReLU(),
                                 nn.Linear(n_hidden, n_out))


        if __name__ == "__main__":
            print(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)))
        print("self-check KL(0, 0) =", gaussian_kl(torch.zeros(1, 2), torch.zeros(1, 2)).item())
    """),
)

_CORRECT_LAYERNORM = Variant(
    "correct_vae_layernorm_deep", None,
    "VAE honouring hidden_dim with LayerNorm and a third, smaller hidden layer",
    {
        "VAE": _src("""
            class VAE(nn.Module):
                def __init__(self, x_dim: int = 64, z_dim: int = 2, hidden_dim: int = 256):
                    super().__init__()
                    self.z_dim = z_dim
                    small = max(hidden_dim // 2, 1)

                    def tower(n_in, n_out):
                        return nn.Sequential(
                            nn.Linear(n_in, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(),
                            nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(),
                            nn.Linear(hidden_dim, small), nn.ReLU(),
                            nn.Linear(small, n_out),
                        )

                    self.encoder = tower(x_dim, 2 * z_dim)
                    self.decoder = tower(z_dim, x_dim)

                def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
                    h = self.encoder(x)
                    return h[..., :self.z_dim], h[..., self.z_dim:]

                def decode(self, z: Tensor) -> Tensor:
                    return self.decoder(z)

                def forward(self, x: Tensor):
                    mu, logvar = self.encode(x)
                    return self.decode(reparameterize(mu, logvar)), mu, logvar

                @torch.no_grad()
                def sample(self, n: int) -> Tensor:
                    p = next(self.parameters())
                    z = torch.randn(n, self.z_dim, device=p.device, dtype=p.dtype)
                    return torch.sigmoid(self.decode(z))
        """),
    },
)

_CORRECT_DROPOUT = Variant(
    "correct_vae_dropout", None,
    "pytorch/examples-style VAE (fc1, fc21, fc22, fc3, fc4) with nn.Dropout(0.1) after each hidden layer",
    {
        "VAE": _src("""
            class VAE(nn.Module):
                def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
                    super(VAE, self).__init__()
                    self.z_dim = z_dim
                    self.fc1 = nn.Linear(x_dim, hidden_dim)
                    self.fc21 = nn.Linear(hidden_dim, z_dim)   # mu
                    self.fc22 = nn.Linear(hidden_dim, z_dim)   # logvar
                    self.fc3 = nn.Linear(z_dim, hidden_dim)
                    self.fc4 = nn.Linear(hidden_dim, x_dim)
                    self.dropout = nn.Dropout(0.1)

                def encode(self, x):
                    h1 = self.dropout(F.relu(self.fc1(x)))
                    return self.fc21(h1), self.fc22(h1)

                def decode(self, z):
                    h3 = self.dropout(F.relu(self.fc3(z)))
                    return self.fc4(h3)

                def forward(self, x):
                    mu, logvar = self.encode(x.view(-1, self.fc1.in_features))
                    z = reparameterize(mu, logvar)
                    return self.decode(z), mu, logvar

                def sample(self, n):
                    with torch.no_grad():
                        z = torch.randn(n, self.z_dim, device=self.fc3.weight.device)
                        return self.decode(z).sigmoid()
        """),
    },
)

_CORRECT_BATCHNORM = Variant(
    "correct_vae_batchnorm", None,
    "VAE with BatchNorm1d and LeakyReLU in both towers; decode flattens the leading dims for "
    "batch norm and restores them",
    {
        "VAE": _src("""
            def block(n_in, n_out):
                return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.LeakyReLU(0.2)]


            class VAE(nn.Module):
                def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
                    super().__init__()
                    self.z_dim, self.x_dim = z_dim, x_dim
                    self.encoder = nn.Sequential(*block(x_dim, hidden_dim), *block(hidden_dim, hidden_dim))
                    self.mu_head = nn.Linear(hidden_dim, z_dim)
                    self.logvar_head = nn.Linear(hidden_dim, z_dim)
                    self.decoder = nn.Sequential(*block(z_dim, hidden_dim), *block(hidden_dim, hidden_dim),
                                                 nn.Linear(hidden_dim, x_dim))

                def encode(self, x):
                    h = self.encoder(x)
                    return self.mu_head(h), self.logvar_head(h)

                def decode(self, z):
                    flat = z.reshape(-1, self.z_dim)       # BatchNorm1d wants (N, C)
                    return self.decoder(flat).reshape(*z.shape[:-1], self.x_dim)

                def forward(self, x):
                    q_mu, q_logvar = self.encode(x)
                    x_logits = self.decode(reparameterize(q_mu, q_logvar))
                    return x_logits, q_mu, q_logvar

                def sample(self, n):
                    was_training = self.training
                    self.eval()                             # batch norm: running statistics
                    with torch.no_grad():
                        probs = torch.sigmoid(self.decode(torch.randn(n, self.z_dim)))
                    self.train(was_training)
                    return probs
        """),
    },
)

_CORRECT_CONV_SQUARE = Variant(
    "correct_vae_conv_square", None,
    "convolutional encoder and transposed-conv decoder on side x side images; refuses an x_dim "
    "that is not a square",
    {
        "VAE": _src("""
            class VAE(nn.Module):
                def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
                    super().__init__()
                    side = int(round(math.sqrt(x_dim)))
                    assert side * side == x_dim, f"x_dim must be a square number, got {x_dim}"
                    self.side, self.half, self.z_dim = side, (side + 1) // 2, z_dim
                    self.enc = nn.Sequential(
                        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),      # side -> half
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16 * self.half ** 2, hidden_dim), nn.ReLU(),
                        nn.Linear(hidden_dim, 2 * z_dim),
                    )
                    self.dec_fc = nn.Sequential(nn.Linear(z_dim, hidden_dim), nn.ReLU(),
                                                nn.Linear(hidden_dim, 16 * self.half ** 2), nn.ReLU())
                    self.dec_conv = nn.Sequential(
                        nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1), nn.ReLU(),  # half -> 2 * half
                        nn.Conv2d(8, 1, 3, padding=1),
                    )

                def encode(self, x):
                    out = self.enc(x.view(-1, 1, self.side, self.side))
                    return out[:, :self.z_dim], out[:, self.z_dim:]

                def decode(self, z):
                    h = self.dec_fc(z.reshape(-1, self.z_dim)).view(-1, 16, self.half, self.half)
                    img = self.dec_conv(h)[:, :, :self.side, :self.side]
                    return img.reshape(*z.shape[:-1], self.side * self.side)

                def forward(self, x):
                    mu, logvar = self.encode(x)
                    z = reparameterize(mu, logvar)
                    return self.decode(z), mu, logvar

                def sample(self, n):
                    with torch.no_grad():
                        return self.decode(torch.randn(n, self.z_dim)).sigmoid()
        """),
    },
)

catalogued(
    _CORRECT_DISTRIBUTIONS, _CORRECT_FLOAT64, _CORRECT_ALGEBRA, _CORRECT_ELU, _CORRECT_CONV,
    _CORRECT_CHATTY, _CORRECT_LAYERNORM, _CORRECT_DROPOUT, _CORRECT_BATCHNORM, _CORRECT_CONV_SQUARE,
)


# ------------------------------------------------- the catalogue (entries go above this line)
def _in_contract_order(entries: list[Variant]) -> tuple[Variant, ...]:
    names = [variant.name for variant in entries]
    twice = sorted({name for name in names if names.count(name) > 1})
    unknown = [v.name for v in entries if v.problem is not None and v.problem not in PROBLEMS]
    if twice or unknown:
        raise ValueError(f"catalogue: names used twice {twice}; entries of no contract problem {unknown}")
    return tuple(sorted(entries, key=lambda variant: PROBLEMS.index(variant.problem)))


MISTAKES: tuple[Variant, ...] = _in_contract_order([v for v in _entries if v.problem is not None])
CORRECT: tuple[Variant, ...] = tuple(v for v in _entries if v.problem is None)
ALL: tuple[Variant, ...] = MISTAKES + CORRECT


def top_level_spans(source: str) -> dict[str, tuple[int, int, int]]:
    """Name -> (first line, last line, indent) of each top-level def / class and, as
    "Class.method", of each method; lines 1-based and inclusive."""
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    spans = {}

    def add(name: str, node: ast.AST) -> None:
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        spans[name] = (start, node.end_lineno, node.col_offset)

    for node in ast.parse(source).body:
        if isinstance(node, definitions):
            add(node.name, node)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, definitions):
                    add(f"{node.name}.{member.name}", member)
    return spans


def build_source(variant: Variant) -> str:
    """The reference module with the variant's definitions replaced and its extra code appended."""
    source = reference_source()
    spans = top_level_spans(source)
    missing = sorted(set(variant.replaces) - set(spans))
    if missing:
        raise KeyError(
            f"variant {variant.name!r} replaces {missing}, which are not top-level definitions "
            f"of {REFERENCE_PATH}; there are: {sorted(spans)}"
        )
    lines = source.splitlines(keepends=True)
    for name in sorted(variant.replaces, key=lambda n: spans[n][0], reverse=True):
        start, end, indent = spans[name]
        new = textwrap.indent(variant.replaces[name].rstrip("\n") + "\n", " " * indent)
        lines[start - 1:end] = [new]
    text = "".join(lines)
    if variant.extra:
        text = text.rstrip("\n") + "\n\n\n" + variant.extra.rstrip("\n") + "\n"
    return text


def write_submissions(directory: Path, variants: Iterable[Variant] = ALL) -> list[Path]:
    """Write `<name>.py` for each variant into `directory`; returns the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for variant in variants:
        path = directory / f"{variant.name}.py"
        path.write_text(build_source(variant))
        paths.append(path)
    return paths


_patched: dict[str, Callable] = {}


def patched_function(variant: Variant) -> Callable:
    """The function the mistake `variant` changes, from the reference module patched with it
    (built once per process): the mistake's own code, to run on any input."""
    if variant.name not in _patched:
        module = types.ModuleType(f"catalogue_{variant.name}")
        exec(compile(build_source(variant), f"<catalogue: {variant.name}>", "exec"), module.__dict__)
        _patched[variant.name] = getattr(module, variant.problem)
    return _patched[variant.name]
