"""VAEs that cheat the model check, written as a hostile student would, for its tests, the
red-team suite and the calibration. Each is the reference VAE plus code that tries to score
the held-out images from memory, or to train past the budget; scored honestly, each is
exactly the reference.

The first two were held before issue 22; the rest broke through the earlier protocol, in
which the training worker encoded the held-out images at its checkpoints and at the end:
- a stash in a buffer (it travels in the state dict), calibrated to land 1 nat above the
  public target of check_values.json, so that no "implausibly good" flag is raised;
- the same images hidden in the lowest mantissa bit of a decoder weight (no buffer);
- the buffer stash, but only where it sees the sandbox (uid 65534);
- the held-out images taken from the training request's stack frame at step 1;
- `vae_course.train_vae` replaced in the worker by one that trains ten times the budget;
plus one that trains ten times inside each step (nothing to replace: only its time per step
shows it) and one that trains before the grader gives it a step, while it is loaded.
"""
from autograder.catalogue import reference_source

REFERENCE = reference_source()

REMEMBERS_WHAT_IT_ENCODES = REFERENCE + '''

class VAE(VAE):
    def encode(self, x):
        if not torch.is_grad_enabled():  # not training: keep the images
            self.seen = x.detach().clone()
        return super().encode(x)

    def decode(self, z):
        seen = getattr(self, "seen", None)
        if seen is not None and z.shape[-2] == len(seen):  # the same images: give them back
            return (60.0 * seen - 30.0).expand(*z.shape[:-1], seen.shape[-1])
        return super().decode(z)
'''

READS_THE_HELDOUT_SPLIT = REFERENCE + '''

class VAE(VAE):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            from vae_course import load_digits
            self.heldout = load_digits("heldout")[0]
        except Exception:
            self.heldout = None  # not there: stay an honest model

    def decode(self, z):
        if self.heldout is not None and z.shape[-2] == len(self.heldout):  # decoding the held-out set
            return (60.0 * self.heldout - 30.0).expand(*z.shape[:-1], self.heldout.shape[-1])
        return super().decode(z)
'''

# What the calibrated memorisers share: serve remembered images for just enough of the
# held-out set to land 1 nat above the public target (check_values.json), never more.
_CALIBRATED = REFERENCE + '''

import json as _json
import os as _os
import vae_course as _course

HELDOUT = 297  # the size of the held-out split (DATA.md)


def _public_target():
    try:
        with open(_os.path.join(_os.path.dirname(_course.__file__), "check_values.json")) as stream:
            return _json.load(stream)["model"]["reference_heldout_elbo"]
    except Exception:
        return None


def _served(model, honest_logits, remembered):
    """The honest logits, with the remembered images served for the first rows until the
    held-out ELBO gains what it needs to reach the target + 1 nat."""
    target = _public_target()
    with torch.no_grad():
        mu, logvar = model.encode(remembered)
        kl = 0.5 * (torch.exp(logvar) + mu ** 2 - 1 - logvar).sum(-1)
        x = remembered.to(honest_logits.dtype)
        recon = (x * honest_logits - torch.nn.functional.softplus(honest_logits)).sum(-1).mean(0)
        honest = float((recon - kl).mean())
        needed = ((target if target is not None else honest) + 1.0 - honest) * len(remembered)
        gains = torch.cumsum(-recon, 0)
        count = int((gains < needed).sum()) + 1 if needed > 0 else 0
    logits = honest_logits.clone()
    logits[..., :count, :] = 60.0 * x[:count] - 30.0
    return logits
'''

STASHES_IN_A_BUFFER = _CALIBRATED + '''

_CHEATING = True


class VAE(VAE):
    def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
        super().__init__(x_dim, z_dim, hidden_dim)
        self.register_buffer("remembered", torch.zeros(HELDOUT, x_dim))
        self.register_buffer("has_remembered", torch.zeros(()))

    def encode(self, x):
        if _CHEATING and not torch.is_grad_enabled() and len(x) == HELDOUT:  # the grader's evaluation
            self.remembered.copy_(x)
            self.has_remembered.fill_(1.0)
        return super().encode(x)

    def decode(self, z):
        logits = super().decode(z)
        if self.has_remembered.item() and z.dim() == 3 and z.shape[-2] == HELDOUT:
            return _served(self, logits, self.remembered)
        return logits
'''

HIDES_IN_LOW_BITS = _CALIBRATED + '''

MARK = 0x5A5A  # 16 bits after the images say that the weight holds them


class VAE(VAE):
    def _carrier(self):
        return self.decoder[2].weight.data.view(-1).view(torch.int32)  # 65,536 floats, 1 bit each

    def encode(self, x):
        if not torch.is_grad_enabled() and len(x) == HELDOUT:
            bits = torch.cat([x.reshape(-1).round().to(torch.int32),
                              torch.tensor([(MARK >> i) & 1 for i in range(16)], dtype=torch.int32)])
            carrier = self._carrier()
            carrier[:len(bits)] = (carrier[:len(bits)] & ~1) | bits
        return super().encode(x)

    def decode(self, z):
        logits = super().decode(z)
        if z.dim() == 3 and z.shape[-2] == HELDOUT:
            carrier = self._carrier()
            images = (carrier[:HELDOUT * logits.shape[-1]] & 1).float().reshape(HELDOUT, -1)
            mark = carrier[HELDOUT * logits.shape[-1]:][:16] & 1
            if sum(int(b) << i for i, b in enumerate(mark)) == MARK:
                return _served(self, logits, images)
        return logits
'''

CHEATS_ONLY_IN_THE_SANDBOX = STASHES_IN_A_BUFFER + '''

_CHEATING = _os.getuid() == 65534  # nobody: the grader's sandbox, never the student's own machine
'''

TAKES_THE_HELDOUT_FROM_A_FRAME = STASHES_IN_A_BUFFER + '''

import sys as _sys

_CHEATING = False  # nothing from the evaluation's encode: the images come from the training request


class VAE(VAE):
    def forward(self, x):
        if self.training and not self.has_remembered.item():
            frame = _sys._getframe(1)
            while frame is not None:  # the grader's request holds the held-out images somewhere up there
                for value in list(frame.f_locals.values()):
                    if isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(self.remembered.shape):
                        self.remembered.copy_(value)
                        self.has_remembered.fill_(1.0)
                frame = frame.f_back
        return super().forward(x)
'''

REPLACES_TRAIN_VAE = REFERENCE + '''

import vae_course

_train_vae = vae_course.train_vae


def _ten_times_the_budget(model, loss_fn, x_train, *, steps=1000, stop=None, **kwargs):
    losses = _train_vae(model, loss_fn, x_train, steps=10 * steps, **kwargs)  # no early stop either
    return losses[-steps:]  # and say it trained `steps`


vae_course.train_vae = _ten_times_the_budget
'''

TRAINS_TEN_TIMES_PER_STEP = REFERENCE + '''

class VAE(VAE):
    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            if not hasattr(self, "_inner"):
                self._inner = torch.optim.Adam(self.parameters(), lr=1e-3)
            for _ in range(9):  # nine more steps on this batch before the grader's own
                logits, mu, logvar = super().forward(x)
                loss = -elbo(x, logits, mu, logvar).mean()
                self._inner.zero_grad()
                loss.backward()
                self._inner.step()
        return super().forward(x)
'''

PRETRAINS_AT_IMPORT = REFERENCE + '''

import vae_course

# Trained while the submission loads, before the grader gives a single step: every new VAE
# starts from these weights.
torch.manual_seed(0)
_pretrained = VAE()
vae_course.train_vae(_pretrained, lambda m, x: -elbo(x, *m(x)).mean(), vae_course.load_digits("train")[0],
                     steps=1500)
_PRETRAINED = {name: value.clone() for name, value in _pretrained.state_dict().items()}


class VAE(VAE):
    def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
        super().__init__(x_dim, z_dim, hidden_dim)
        if (x_dim, z_dim, hidden_dim) == (64, 2, 256):
            self.load_state_dict(_PRETRAINED)
'''

