"""The worker: runs one student submission in its own process and answers the grader.

Started by autograder/worker_client.py as
    python -I -S worker.py REQUEST_FD REPLY_FD PUBLIC_DIR [SITE_DIR ...]
It imports only torch, numpy, the public course module and `wire`: never the reference or
the hidden tests. The grader rebuilds whatever it replies from plain data (wire.decode), so
student code that tampers with this module can only make its own answers wrong.

Model requests run with a known-good `reparameterize` and loss in place of the student's
(error carried forward: a wrong sampler or likelihood costs points only in its own problem).
"""
import random
import re
import sys
import traceback
import types
import warnings


def _bootstrap_path() -> None:
    here = __file__.rsplit("/", 1)[0]
    sys.path[:0] = [here, sys.argv[3], *sys.argv[4:]]


# IPython's transformer re-reads the whole cell for every line of its syntax it rewrites (about
# 2 us per line and character): a cell whose lines x characters pass this fails at once rather
# than keeping the worker busy for an hour (a few seconds at most; `%matplotlib inline` and a
# few `!pip` lines in a cell of a few KB use 1% of it).
IPYTHON_SYNTAX = re.compile(r"^[ \t]*(?:[%!?/,;]|>>>|In \[|\.\.\.)|\?[ \t]*$|=[ \t]*[%!]", re.MULTILINE)
MAX_IPYTHON_WORK = 1_000_000  # lines of IPython syntax x characters of the cell
PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")  # their body is plain Python


def python_source(source: str) -> str:
    """A notebook cell as Python: `%magic` and `!shell` lines become get_ipython() calls (which
    do nothing here), a `%%time`-like cell magic is dropped so that its body still runs. Only
    a cell that may hold IPython's syntax goes through IPython's transformer; SyntaxError for
    one that would keep it busy (MAX_IPYTHON_WORK)."""
    first, _, rest = source.lstrip().partition("\n")
    if first.split(" ")[0] in PYTHON_CELL_MAGICS:
        source = rest
    lines = len(IPYTHON_SYNTAX.findall(source))
    if not lines and not source.lstrip("\n")[:1].isspace():
        return source  # plain Python: IPython would give it back as it is
    if lines * len(source) > MAX_IPYTHON_WORK:
        raise SyntaxError(f"{lines} lines of IPython syntax (magics, ! commands) in a cell of {len(source):,} "
                          "characters: too many for the grader to rewrite; keep magics to a few short cells")
    from IPython.core.inputtransformer2 import TransformerManager  # preloaded in the template

    return TransformerManager().transform_cell(source)


class _NoIPython:
    """Stands in for get_ipython(): magics and shell escapes in a notebook do nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Server:
    def __init__(self, torch, numpy, vae_course):
        self.torch = torch
        self.numpy = numpy
        self.vae_course = vae_course
        self.module = types.ModuleType("submission")
        self.module.__dict__.update(get_ipython=lambda: _NoIPython(), display=lambda *a, **k: None)
        self.sources: dict[str, list[str]] = {}
        self.models: list = []
        self.reparameterize_calls = 0
        # Bound now, before the submission is loaded: a submission that replaces
        # vae_course.train_vae or load_digits changes nothing the grader's training uses.
        self.training_steps = vae_course.training_steps
        self.load_digits = vae_course.load_digits
        self.training: dict | None = None

    # --- requests -----------------------------------------------------------------------
    def op_ping(self):
        return {}

    def op_load(self, cells, notebook=False):
        """Run the submission's cells in its module: a notebook's (`notebook`) with IPython's
        syntax made Python first. A cell that fails is reported and the rest still run;
        "compile_errors" lists [label, why] of those that do not compile."""
        sys.modules["submission"] = self.module
        errors, compile_errors = [], []
        for label, source in cells:
            self.sources[label] = source.splitlines()
            try:
                code = compile(python_source(source) if notebook else source, f"<{label}>", "exec")
            except BaseException as error:  # noqa: BLE001 - SyntaxError, or MemoryError for `x = ----...1`
                errors.append([label, self.describe(error)])
                compile_errors.append([label, f"SyntaxError on line {error.lineno}: {error.msg}"[:500]
                                       if isinstance(error, SyntaxError) else
                                       f"{type(error).__name__}: it cannot be compiled (too long or nested too deeply?)"])
                continue
            try:
                exec(code, self.module.__dict__)
            except BaseException as error:  # noqa: BLE001 - a failing cell is reported, not fatal
                errors.append([label, self.describe(error)])
        return {"cell_errors": errors, "compile_errors": compile_errors}

    def op_call(self, name, args, kwargs, grad_args=(), grad_output=None, repeat=1):
        fn = self.lookup(name)
        args = [
            arg.detach().clone().requires_grad_(True) if index in grad_args else arg
            for index, arg in enumerate(args)
        ]
        outputs = [fn(*args, **kwargs) for _ in range(repeat)]
        reply = {"out": self.plain(outputs[0]) if repeat == 1 else [self.plain(o) for o in outputs]}
        if grad_args:
            reply["grads"] = self.gradients(outputs[0], [args[i] for i in grad_args], grad_output)
        return reply

    def op_model_new(self, kwargs):
        self.models.append(self.lookup("VAE")(**kwargs))
        return {"handle": len(self.models) - 1}

    def op_model_call(self, handle, method, args, eps=None, training=None):
        """`model.method(*args)`; in training (True) or evaluation (False) mode when given."""
        model = self.models[handle]
        if training is not None:
            model.train(training)
        with self.known_good_reparameterize(eps):
            self.reparameterize_calls = 0
            out = getattr(model, method)(*args)
            return {"out": self.plain(out), "reparameterize_called": self.reparameterize_calls > 0}

    def op_model_composed(self, handle, x, eps, training):
        """encode(x), then decode(mu + exp(logvar / 2) * eps), in one request: seeded like a
        forward(x) request, the model draws the same random numbers (dropout masks) in the
        same order as forward does."""
        model = self.models[handle]
        model.train(training)
        mu, logvar = model.encode(x)
        return {"out": self.plain([model.decode(mu + self.torch.exp(0.5 * logvar) * eps), mu, logvar])}

    def op_model_gradients(self, handle, x, eps):
        """Which parameters get gradient from the reconstruction term, the encoder, the decoder."""
        torch, model = self.torch, self.models[handle]
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            return {"parameters": 0}

        def touched(output):
            grads = torch.autograd.grad(output, params, allow_unused=True, retain_graph=True)
            return torch.tensor([g is not None and bool(g.abs().sum() > 0) for g in grads])

        with self.known_good_reparameterize(eps):
            logits, mu, logvar = model(x)
        reconstruction = self.log_likelihood(x, logits).sum()
        mu_e, logvar_e = model.encode(x)
        decoded = model.decode(torch.zeros(3, mu_e.shape[-1], dtype=x.dtype))
        return {
            "parameters": len(params),
            "reconstruction": touched(reconstruction),
            "encoder": touched(mu_e.sum() + logvar_e.sum()),
            "decoder": touched(decoded.sum()),
        }

    def op_model_train_begin(self, handle, batch_size, lr, seed):
        """Begin training model `handle` on the training split with the known-good loss. The
        grader then drives the loop (bound when this worker started, before the submission was
        loaded) in chunks, op_model_train_steps, and counts the steps itself. This worker never
        sees a held-out image: other workers estimate the held-out ELBO from its weights."""
        x_train, _ = self.load_digits("train")
        self.training = {"steps": self.training_steps(self.models[handle], self.loss, x_train, batch_size=batch_size,
                                                      lr=lr, seed=seed), "random_state": None}
        return {}

    def op_model_train_steps(self, count):
        """`count` more steps of the training begun; the mean loss of the last 50. Requests reseed
        the generators, so the training's own random state is put back at every chunk: the run
        is the same however it is cut."""
        training = self.training
        if training is None:
            raise RuntimeError("no training was begun")
        with self.random_state_of(training), self.known_good_reparameterize(None):
            losses = [next(training["steps"]) for _ in range(count)]
        return {"loss": sum(losses[-50:]) / max(1, len(losses[-50:]))}

    def op_model_weights(self, handle):
        """The model's state dict (weights and buffers), as plain tensors."""
        return {"weights": {str(name): self.plain(value) for name, value in self.models[handle].state_dict().items()}}

    def op_model_encode(self, kwargs, weights, x):
        """A new VAE(**kwargs) with `weights`, in evaluation mode: encode(x)."""
        with self.torch.no_grad():
            return {"out": self.plain(self.model_with(kwargs, weights).encode(x))}

    def op_model_decode(self, kwargs, weights, z):
        """A new VAE(**kwargs) with `weights`, in evaluation mode: decode(z)."""
        with self.torch.no_grad():
            return {"out": self.plain(self.model_with(kwargs, weights).decode(z))}

    def model_with(self, kwargs, weights):
        """VAE(**kwargs) with the trained `weights`, in evaluation mode (dropout off, batch norm's
        running statistics): the mode a trained model is used in."""
        model = self.lookup("VAE")(**kwargs)
        model.load_state_dict(weights)
        model.eval()
        return model

    def random_state_of(self, training):
        """Run with the training's own torch, numpy and random states, kept between chunks."""
        server = self

        class State:
            def __enter__(self):
                if training["random_state"] is not None:
                    torch_state, numpy_state, random_state = training["random_state"]
                    server.torch.set_rng_state(torch_state)
                    server.numpy.random.set_state(numpy_state)
                    random.setstate(random_state)

            def __exit__(self, *exc):
                training["random_state"] = (server.torch.get_rng_state(), server.numpy.random.get_state(),
                                            random.getstate())

        return State()

    def op_visible_check(self, check, name):
        """One of the notebook's visible checks (`check`, from the public vae_checks) on the
        student's `name`, what it prints captured: {"passed": bool, "message": str}."""
        import contextlib
        import io

        import vae_checks

        if self.module.__dict__.get(name) is None:
            return {"passed": False, "message": f"`{name}` is not defined in your submission"}
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                getattr(vae_checks, check)(self.module.__dict__[name])
            passed, message = True, ""
        except AssertionError as failed:
            passed, message = False, str(failed)
        except BaseException as error:  # noqa: BLE001 - SystemExit and the like fail the check
            passed, message = False, self.describe(error)
        return {"passed": passed, "message": "\n\n".join(p for p in (message, printed.getvalue().strip()) if p)}

    # --- known-good pieces for model requests ------------------------------------------
    def known_good_reparameterize(self, eps):
        """Temporarily replace the student's `reparameterize` in their module's namespace."""
        server, namespace = self, self.module.__dict__

        def reparameterize(mu, logvar):
            server.reparameterize_calls += 1
            torch = server.torch
            noise = torch.randn(torch.broadcast_shapes(mu.shape, logvar.shape), dtype=mu.dtype, device=mu.device) \
                if eps is None else eps
            return mu + torch.exp(0.5 * logvar) * noise

        class Patch:
            def __enter__(self):
                self.saved = namespace.get("reparameterize")
                namespace["reparameterize"] = reparameterize

            def __exit__(self, *exc):
                namespace["reparameterize"] = self.saved

        return Patch()

    def log_likelihood(self, x, logits):
        """log Bernoulli(x; sigmoid(logits)) summed over pixels, written stably as x * l - softplus(l)."""
        return (x * logits - self.torch.nn.functional.softplus(logits)).sum(-1)

    def elbo(self, x, logits, mu, logvar):
        """log p(x | z) - KL(N(mu, exp(logvar)) || N(0, I)) per example, written out here (never
        the student's pieces), the KL in closed form: 1/2 sum(exp(logvar) + mu^2 - 1 - logvar).
        (torch.distributions would give the same values at 1.2 times the training time.)"""
        kl = 0.5 * (self.torch.exp(logvar) + mu**2 - 1.0 - logvar).sum(-1)
        return self.log_likelihood(x, logits) - kl

    def loss(self, model, x):
        return -self.elbo(x, *model(x)).mean()

    # --- helpers -------------------------------------------------------------------------
    def lookup(self, name):
        value = self.module.__dict__.get(name)
        if value is None:
            raise NameError(f"`{name}` is not defined in your submission")
        return value

    def gradients(self, output, inputs, grad_output):
        torch = self.torch
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return [None] * len(inputs)
        grad_output = torch.ones_like(output) if grad_output is None else grad_output
        grads = torch.autograd.grad(output, inputs, grad_outputs=grad_output.to(output.dtype), allow_unused=True)
        return [None if g is None else self.plain(g) for g in grads]

    def plain(self, value):
        """Plain tensors, numbers and tuples only: what the grader accepts on the wire."""
        torch = self.torch
        if isinstance(value, torch.Tensor):
            return value.detach().as_subclass(torch.Tensor).to("cpu").clone()
        if isinstance(value, (tuple, list)):
            return [self.plain(v) for v in value]
        if isinstance(value, (bool, int, float)) or value is None:
            return value
        return f"<an object of type {type(value).__name__}>"

    def describe(self, error: BaseException) -> str:
        """`TypeError: ... (cell 'gaussian_kl', line 7: <code>)`: where in the student's code."""
        where = ""
        for frame, line in traceback.walk_tb(error.__traceback__):
            label = frame.f_code.co_filename.strip("<>")
            if label in self.sources and 0 < line <= len(self.sources[label]):
                where = f" (cell '{label}', line {line}: {self.sources[label][line - 1].strip()})"
        return f"{type(error).__name__}: {error}"[:2000] + where

    def handle(self, request: dict) -> dict:
        if request.get("seed") is not None:
            # The CPU generator, as torch.manual_seed seeds it, without its checks for
            # accelerators (a worker has none): 1.4 us instead of 150 us, on every request.
            self.torch.default_generator.manual_seed(request["seed"])
        if request.get("other_seed") is not None:  # other generators, so their use is repeatable too
            random.seed(request["other_seed"])
            self.numpy.random.seed(request["other_seed"] % 2**32)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = getattr(self, "op_" + request["op"])(**request.get("args", {}))
            return {"ok": True, **value}
        except BaseException as error:  # noqa: BLE001 - SystemExit and the like are the student's too
            return {"ok": False, "error": self.describe(error)}
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


def load_libraries() -> dict:
    """What every worker imports before it sees a submission (also what the template holds)."""
    import numpy
    import torch
    import torch.distributions  # noqa: F401 - not used here, but by many submissions: imported once
    import vae_course
    import wire

    torch.set_num_threads(1)
    return {"torch": torch, "numpy": numpy, "vae_course": vae_course, "wire": wire}


def preload() -> None:
    """Import, once in the template, what the release notebook's setup cell imports besides
    torch: pyplot (with matplotlib's font cache, 0.7-1 s to build in a fresh sandbox) and the
    public checks, and IPython's transformer for cells with magics. A forked worker then starts
    with them, as after a fresh import."""
    import matplotlib.pyplot  # noqa: F401 - MPLBACKEND=Agg: nothing is drawn
    import vae_checks  # noqa: F401
    from IPython.core import inputtransformer2  # noqa: F401 - for a notebook's magics (python_source)


def warm_up(libraries: dict) -> None:
    """Pay once, in the template, what the first training step of every worker would pay
    (importing the optimiser pulls in torch._dynamo: 1.5-4 s). Touches no global RNG."""
    torch = libraries["torch"]
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimiser = libraries["vae_course"].adam_optimizer([parameter], 1e-3)  # the one train_vae uses
    parameter.sum().backward()
    optimiser.step()


def serve(request_fd: int, reply_fd: int, libraries: dict) -> None:
    """Answer the grader's requests until it closes the connection."""
    wire = libraries["wire"]
    server = Server(libraries["torch"], libraries["numpy"], libraries["vae_course"])
    while True:
        try:
            request = wire.receive(request_fd)
        except wire.WireError:
            return  # the grader closed the connection: we are done
        reply = server.handle(request)
        try:
            wire.send(reply_fd, reply)
        except Exception as error:  # noqa: BLE001 - an unsendable answer is the student's fault
            wire.send(reply_fd, {"ok": False, "error": f"your code returned something that cannot be sent back: {error}"})


def main() -> None:
    _bootstrap_path()
    serve(int(sys.argv[1]), int(sys.argv[2]), load_libraries())


if __name__ == "__main__":
    main()
