"""The grader's side of the worker: start it, send requests, enforce limits, kill it.

Student code runs only in the worker process (autograder/untrusted/worker.py). Replies come
back through `wire` (tensors and plain data, type-checked); what the student prints is drained
by a thread and kept bounded. A worker that hangs past its time limit, crashes or dies is
killed with its whole process group; the request that needed it fails, and the next test
gets a fresh worker.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import torch

from assignment.contract import CONTRACT
from autograder import process_cpu
from autograder.isolation import sandbox, template_client
from autograder.isolation.limits import Limits
from autograder.isolation.process import start_limited, worker_environment, worker_rlimits
from autograder.untrusted import template as untrusted_template
from autograder.untrusted import wire


class StudentError(Exception):
    """The student's code raised; the message says what and where."""


class WorkerFailure(Exception):
    """The worker timed out, crashed, broke a limit or sent something invalid."""


class TimeLimitExceeded(WorkerFailure):
    """A request ran past its time limit (the worker was killed)."""


class OutputTrap:
    """Keeps the first and last `limit` bytes of a stream and counts the rest."""

    def __init__(self, stream, limit: int):
        self.limit, self.head, self.tail, self.total = limit, b"", b"", 0
        self.lock = threading.Lock()
        self.fd = stream.fileno()
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        for chunk in iter(lambda: stream.read1(1 << 16), b""):
            with self.lock:
                self.total += len(chunk)
                if len(self.head) < self.limit:
                    room = self.limit - len(self.head)
                    self.head, chunk = self.head + chunk[:room], chunk[room:]
                self.tail = (self.tail + chunk)[-self.limit:]
        stream.close()  # every writer is gone

    def take(self) -> str:
        """What was printed since the last take, trimmed in the middle when long."""
        deadline = time.monotonic() + 0.5  # what the worker flushed before replying may still be in the pipe
        try:
            while time.monotonic() < deadline and select.select([self.fd], [], [], 0)[0] and self.thread.is_alive():
                time.sleep(0.002)
        except (OSError, ValueError):  # closed
            pass
        time.sleep(0.001)  # and the drain thread may hold a chunk it has read but not yet kept
        with self.lock:
            head, tail, total = self.head, self.tail, self.total
            self.head, self.tail, self.total = b"", b"", 0
        text = head.decode(errors="replace")
        if total > len(head) + len(tail):
            text += f"\n... [{total - len(head) - len(tail)} bytes not shown] ...\n"
        return text + tail.decode(errors="replace")


def _rows(value: object, types: tuple[type, ...]) -> list[tuple]:
    """`value` as a list of rows of these types, or WorkerFailure (a malformed reply)."""
    if not (isinstance(value, list) and all(isinstance(row, list) and len(row) == len(types)
                                            and all(type(v) is t for v, t in zip(row, types)) for row in value)):
        raise WorkerFailure("the worker sent a malformed reply")
    return [tuple(row) for row in value]


class Worker:
    """One worker process with the submission's cells loaded: forked from this process's
    template where possible (isolation.template_client), else a fresh sandboxed Python.
    `worker_start`: Settings.worker_start ("classic": never forked)."""

    def __init__(self, cells: list[tuple[str, str]], limits: Limits, isolation: sandbox.Isolation,
                 worker_start: str, notebook: bool = False):
        """`notebook`: the cells are a notebook's, whose IPython syntax the worker turns into Python."""
        self.cells, self.limits, self.worker_start = cells, limits, worker_start
        self.workdir: str | None = None
        self.tree_root: int | None = None  # the pid whose process tree is this worker (cpu_seconds)
        if limits.require_sandbox:
            sandbox.require(isolation)
        self.sandboxed = isolation.sandboxed
        request_read, self.request_fd = os.pipe()
        self.reply_fd, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        started = time.perf_counter()
        try:
            self.process = self._fork(request_read, reply_write, output_write, isolation)
        finally:
            for fd in (request_read, reply_write, output_write):
                os.close(fd)
        self.output = OutputTrap(open(output_read, "rb"), limits.output_bytes)
        try:
            self.request("ping", self.limits.start_seconds, None, {})
            self.start_seconds = time.perf_counter() - started  # until it answers, before the submission
            reply = self.request("load", self.limits.start_seconds, None, {"cells": cells, "notebook": notebook})
            # what the submission's code may have tampered with: checked, never trusted
            self.cell_errors: list[tuple[str, str]] = _rows(reply.get("cell_errors"), (str, str))
            self.compile_errors: list[tuple[str, str]] = _rows(reply.get("compile_errors", []), (str, str))
        except WorkerFailure:
            self.close()  # no one else holds this half-started worker: free its pipes and folder
            raise

    def _fork(self, request_read: int, reply_write: int, output_write: int, isolation: sandbox.Isolation):
        template = template_client.shared_template(worker_environment(untrusted_template.WORKDIR), isolation,
                                                   self.worker_start, self.limits.start_seconds)
        if template is not None:
            try:
                process = template.fork(request_read, reply_write, output_write, worker_rlimits(self.limits, isolation))
                self.start_path = "template"
                return process
            except template_client.TemplateUnavailable:
                pass  # this once the classic way; the next worker gets a new template
        self.start_path = "classic"
        self.workdir = tempfile.mkdtemp(prefix="vae-worker-")
        command = [
            sys.executable, "-I", "-S", str(sandbox.UNTRUSTED_DIR / "worker.py"),
            str(request_read), str(reply_write), str(sandbox.PUBLIC_DIR), *site.getsitepackages(),
        ]
        command = sandbox.wrap(command, workdir=self.workdir, isolation=isolation)
        return start_limited(command, self.workdir, self.limits, isolation, stdin=subprocess.DEVNULL,
                             stdout=output_write, stderr=output_write, pass_fds=(request_read, reply_write))

    def request(self, op: str, timeout: float, seed: int | None, args: dict, other_seed: int | None = None) -> dict:
        """Send one request; the reply's fields, or StudentError / WorkerFailure. `seed` seeds
        torch's global generator, `other_seed` those of numpy and random."""
        try:
            wire.send(self.request_fd, {"op": op, "seed": seed, "other_seed": other_seed, "args": args})
            reply = wire.receive(self.reply_fd, timeout)
        except TimeoutError:
            self.kill()
            raise TimeLimitExceeded(f"your code did not finish within {timeout:g} s (time limit)") from None
        except (wire.WireError, OSError) as error:
            try:
                self.process.wait(timeout=2)  # bwrap needs a moment to pass on how the worker ended
            except subprocess.TimeoutExpired:
                pass
            self.kill()
            raise WorkerFailure(self._death_reason(error)) from None
        if type(reply.get("ok")) is not bool:
            raise WorkerFailure("the worker sent a malformed reply")
        if not reply["ok"]:
            raise StudentError(str(reply.get("error", "unknown error")))
        return reply

    def _death_reason(self, error: Exception) -> str:
        code = self.process.wait(timeout=5) if self.process.poll() is None else self.process.returncode
        if self.sandboxed and code is not None and code > 128:  # bwrap reports signal N as 128 + N
            try:
                code = -signal.Signals(code - 128)
            except ValueError:
                pass
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            if -code == signal.SIGXCPU:
                return "your code used up its CPU time limit"
            return f"the process running your code was killed by {name} (crash or memory limit)"
        if code is not None:
            return f"the process running your code exited (status {code}), e.g. through sys.exit or os._exit"
        return f"lost contact with the process running your code ({error})"

    def alive(self) -> bool:
        return self.process.poll() is None

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by this worker and every process it started (process_cpu);
        None where /proc cannot tell."""
        if self.tree_root is None:
            if isinstance(self.process, template_client.ForkedProcess):  # found by the pipe it reads
                self.tree_root = process_cpu.holder_of_pipe(self.process.template.process.pid, self.request_fd) or 0
            else:
                self.tree_root = self.process.pid
        return process_cpu.tree_seconds(self.tree_root) if self.tree_root else None

    def take_output(self) -> str:
        return self.output.take()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        for fd in (self.request_fd, self.reply_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.kill()
        self.output.thread.join(timeout=5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


class Student:
    """What the hidden tests talk to: the submission's functions and model, behind a worker.

    After a worker failure every further request of the same test fails at once with the same
    message (so hypothesis's shrinking costs nothing); `begin_test` starts a fresh worker.
    """

    def __init__(self, cells: list[tuple[str, str]], limits: Limits, isolation: sandbox.Isolation,
                 worker_start: str, *, notebook: bool = False, started: float | None = None):
        """`limits`, `isolation` and `worker_start`: what the grading process resolved once from its
        settings (`Settings.limits`, `sandbox.detect(settings)`, `Settings.worker_start`); nothing
        here has a default of its own. `notebook`: the cells are a notebook's. `started`: when the
        submission's time began (time.monotonic(); now when not given), so that reading it counts
        against its limit too."""
        self.cells, self.limits, self.notebook = cells, limits, notebook
        self.isolation, self.worker_start = isolation, worker_start
        self.deadline = (time.monotonic() if started is None else started) + limits.submission_seconds
        self.worker: Worker | None = None
        self.failure: WorkerFailure | None = None
        self.seed = 0
        self.load_errors: list[tuple[str, str]] = []
        self.trained: dict = {}
        self.encoder: Worker | None = None  # the worker that encodes the held-out images (model_check)
        self.training_failures: dict[str, Exception] = {}  # by the model's arguments
        self.generation = 0  # counts workers started, so cached model handles can be dropped
        self.start_failure: WorkerFailure | None = None  # a load that timed out, once for all tests
        self.hung = ""  # the function whose call first ran past the time limit
        # seconds, for benchmarks only; and how many workers were forked from a template or started classic
        self.timing = {"worker_start": 0.0, "model_training": 0.0, "template_starts": 0, "classic_starts": 0}

    def begin_test(self) -> None:
        self.failure = None
        self.seed = 0

    def _worker(self) -> Worker:
        if self.worker is not None and not self.worker.alive():
            self.worker.close()
            self.worker = None
        if self.start_failure is not None:
            raise self.start_failure
        if self.worker is None:
            self.generation += 1
            started = time.perf_counter()
            try:
                self.worker = Worker(self.cells, self.limits, self.isolation, self.worker_start, self.notebook)
            except TimeLimitExceeded as failure:  # loading hangs: it would hang for every test
                self.timing["worker_start"] += time.perf_counter() - started
                self.start_failure = TimeLimitExceeded(f"loading your submission: {failure}")
                raise self.start_failure from None
            except WorkerFailure:
                self.timing["worker_start"] += time.perf_counter() - started
                raise
            self.timing["worker_start"] += self.worker.start_seconds  # loading the cells counts as tests
            self.timing[f"{self.worker.start_path}_starts"] += 1
            self.load_errors = self.worker.cell_errors
        return self.worker

    def compile_error(self) -> str | None:
        """Why the first cell that does not compile does not ("SyntaxError on line 3: ..."),
        once the submission is loaded in a worker; None when every cell compiles or no worker
        could be started (the tests then say why)."""
        try:
            worker = self._worker()
        except WorkerFailure:
            return None
        return next((why for _, why in worker.compile_errors), None)

    def request(self, op: str, timeout: float | None = None, rng_seed: int | None = None, **args) -> dict:
        """One request to the worker. Torch is seeded first with `rng_seed` when given, else with
        a counter that restarts at every test; numpy and random always with the counter. So
        results are repeatable, and only torch's generator repeats under a fixed `rng_seed`."""
        if self.failure is not None:
            raise self.failure
        try:
            remaining = self._time_left()
        except WorkerFailure as failure:
            self.failure = failure
            raise
        self.seed += 1
        try:
            return self._worker().request(
                op, min(timeout or self.limits.call_seconds, remaining), rng_seed or self.seed, args, self.seed
            )
        except WorkerFailure as failure:
            self.failure = failure
            raise

    def call(self, name: str, *args, grad_args=(), grad_output=None, repeat: int = 1,
             rng_seed: int | None = None, **kwargs) -> dict:
        """Call the student's function `name`; the reply holds "out" (and "grads"). Once a call
        ran past its time limit, every later call of the submission gets `hung_call_seconds`:
        correct code answers the hidden tests' small inputs in milliseconds, and a hang then
        costs one long wait per submission, not one per test or per function that calls it."""
        if self.failure is not None:  # this test already failed: the same failure, unchanged
            raise self.failure
        timeout = self.limits.hung_call_seconds if self.hung else None
        try:
            return self.request(
                "call", timeout, rng_seed=rng_seed, name=name, args=list(args), kwargs=kwargs,
                grad_args=list(grad_args), grad_output=grad_output, repeat=repeat,
            )
        except TimeLimitExceeded as failure:
            if self.hung:
                self.failure = TimeLimitExceeded(f"{failure}: `{self.hung}` already ran past the "
                                             f"{self.limits.call_seconds:g} s limit, so every call gets "
                                             f"{self.limits.hung_call_seconds:g} s from then on")
                raise self.failure from None
            self.hung = name
            raise

    def new_model(self, **kwargs) -> int:
        """Construct the student's VAE(**kwargs) in the worker; a handle for model requests."""
        return self.request("model_new", kwargs=kwargs)["handle"]

    def model_call(self, handle: int, method: str, *args, eps=None) -> dict:
        """`model.method(*args)` with known-good sampling (fixed `eps` when given)."""
        return self.request("model_call", handle=handle, method=method, args=list(args), eps=eps)

    def trained_model(self, kwargs: dict, train: Callable[[int], dict]) -> tuple[int, dict]:
        """The model VAE(**kwargs) built in this submission's worker and trained by `train(handle)`
        (model_check drives the training and says what the reply holds), once per worker and
        then reused. Training is repeatable, so one that failed fails every later test the same
        way without running again."""
        key = (self.generation, repr(kwargs))
        if repr(kwargs) in self.training_failures:
            raise self.training_failures[repr(kwargs)]
        if self.trained.get("key") != key:
            handle = self.new_model(**kwargs)
            started, starts_before = time.perf_counter(), self.timing["worker_start"]
            try:
                reply = train(handle)
            except (StudentError, WorkerFailure) as failure:
                self.training_failures[repr(kwargs)] = failure
                raise
            finally:
                self._close_encoder()
                # the estimates' workers count as worker starts, the rest as training
                self.timing["model_training"] += (time.perf_counter() - started
                                                  - (self.timing["worker_start"] - starts_before))
            self.trained = {"key": (self.generation, *key[1:]), "value": (handle, reply)}
        return self.trained["value"]

    # --- what model_check drives: training in chunks, estimates in other workers ------------
    def begin_training(self, handle: int, batch_size: int, lr: float, seed: int) -> None:
        """Begin training the model `handle` in this submission's worker, on the training split
        only, with the loop the worker bound before it loaded the submission."""
        self.request("model_train_begin", handle=handle, batch_size=batch_size, lr=lr, seed=seed)

    def train_steps(self, count: int, timeout: float) -> None:
        """`count` more training steps (the grader counts them; nothing the worker says does)."""
        self.request("model_train_steps", timeout, count=count)

    def worker_cpu_seconds(self) -> float | None:
        """CPU seconds used so far by this submission's worker and all it started, threads and
        processes included (None where that cannot be read)."""
        return self.worker.cpu_seconds() if self.worker is not None else None

    def weights(self, handle: int) -> dict:
        """A snapshot of the model's state dict: {name: tensor}; what else the worker sends is
        dropped (the other worker then fails to load it, as the student's own code would)."""
        weights = self.request("model_weights", handle=handle).get("weights")
        if not isinstance(weights, dict):
            raise WorkerFailure("the worker sent a malformed reply")
        return weights

    def encoded_apart(self, kwargs: dict, weights: dict, x: torch.Tensor) -> object:
        """encode(x) by VAE(**kwargs) built anew with `weights`, in evaluation mode, in a worker
        of its own: the only one that sees `x` (the held-out images), kept for the training's
        later estimates (it can only answer mu and logvar) and closed after it."""
        if self.encoder is None or not self.encoder.alive():
            self._close_encoder()
            self.encoder = self._fresh_worker()
        return self._apart(self.encoder, "model_encode", {"kwargs": kwargs, "weights": weights, "x": x})

    def decoded_in_fresh_worker(self, kwargs: dict, weights: dict, z: torch.Tensor) -> object:
        """decode(z) by VAE(**kwargs) built anew with `weights`, in evaluation mode, in a fresh
        worker (closed after): it never sees a held-out image, nor what an earlier one decoded."""
        worker = self._fresh_worker()
        try:
            return self._apart(worker, "model_decode", {"kwargs": kwargs, "weights": weights, "z": z})
        finally:
            worker.close()

    def _time_left(self) -> float:
        """Seconds left of the submission's total time, or WorkerFailure once there are none."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerFailure(f"the submission used up its total time limit of {self.limits.submission_seconds:g} s")
        return remaining

    def _fresh_worker(self) -> Worker:
        self._time_left()
        worker = Worker(self.cells, self.limits, self.isolation, self.worker_start, self.notebook)
        self.timing["worker_start"] += worker.start_seconds
        self.timing[f"{worker.start_path}_starts"] += 1
        return worker

    def _apart(self, worker: Worker, op: str, request: dict) -> object:
        return worker.request(op, min(self.limits.call_seconds, self._time_left()), 1, request)["out"]

    def _close_encoder(self) -> None:
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None

    def take_output(self) -> str:
        return self.worker.take_output() if self.worker is not None else ""

    def close(self) -> None:
        self._close_encoder()
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def visible_checks(self) -> list[dict]:
        """The notebook's visible checks run on the submission in the worker, each as a test of
        its own (so one that crashes or hangs fails alone): [{"name", "passed", "output"}].
        The replies are untrusted: anything but a bool and a text fails the check."""
        results = []
        for check, name in ((problem.check_function, problem.name) for problem in CONTRACT):
            self.begin_test()
            try:
                reply = self.request("visible_check", 3 * self.limits.call_seconds, check=check, name=name)
                if type(reply.get("passed")) is not bool or type(reply.get("message")) is not str:
                    raise WorkerFailure("the worker sent a malformed reply")
                passed, output = reply["passed"], reply["message"][:4000]
            except (StudentError, WorkerFailure) as failure:
                passed, output = False, f"This check could not run: {failure}"
            results.append({"name": check, "passed": passed, "output": output})
        return results
