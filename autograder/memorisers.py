"""Two VAEs that cheat the held-out evaluation, for the model check's tests and calibration:
each is the reference VAE plus code that serves the held-out images from memory, so that
scored honestly it is exactly the reference."""
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
