"""The grader's side of the template (autograder/untrusted/template.py): a sandboxed process
that has imported torch once and forks each new worker in milliseconds.

One template per grading process, started on first use inside the same bubblewrap sandbox
as a classic worker and probed once (a forked worker must be able to make its own
namespaces). Under a root grader the template runs as the real uid 65534 without any
capability, and each worker makes a user namespace of its own; under an unprivileged grader
it runs in bubblewrap's user namespace, which forbids nested ones, keeping there (and only
there) the two capabilities that make a worker's other namespaces (TEMPLATE_CAPABILITIES).
Where neither works (no bubblewrap, a bwrap without --cap-add, a kernel that refuses, found
by the probe) `shared_template()` returns None and workers start the classic way, each a
fresh sandboxed Python. `Settings.worker_start = "classic"` (VAE_WORKER_START=classic)
forces that.

What the template sends is parsed as JSON and type-checked; it never runs student code,
and a template that stops answering is killed with its whole sandbox (every worker in it).
"""
from __future__ import annotations

import json
import os
import select
import signal
import site
import socket
import subprocess
import sys
import threading
import time

from autograder.isolation import sandbox
from autograder.isolation.limits import TMPFS_BYTES
from autograder.untrusted import template as untrusted_template

EXIT_SECONDS = 5.0  # for the template to report a killed worker's end
# Kept by the template inside bubblewrap's user namespace (unprivileged grader only): to make
# each worker's mount, PID, network, IPC and UTS namespaces, and to empty its bounding set.
TEMPLATE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETPCAP")


class TemplateUnavailable(Exception):
    """The template could not be started or its workers could not be set up here."""


class ForkedProcess:
    """A worker forked by the template, with the part of `subprocess.Popen` Worker uses."""

    def __init__(self, template: TemplateClient, ident: int):
        self.template, self.id = template, ident
        self.returncode: int | None = None  # 128 + N for signal N, as bubblewrap reports it

    def poll(self) -> int | None:
        self.template.pump(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self.template.wait_for(self, timeout)
        return self.returncode

    def kill(self) -> None:
        """Kill the worker and, as it is PID 1 of its namespace, everything it started."""
        if self.returncode is None:
            self.template.kill(self)


class TemplateClient:
    """The template process, seen from the grader: it forks workers and reports their ends.
    `start_seconds` bounds its start and each fork (Limits.start_seconds)."""

    def __init__(self, environment: dict[str, str], isolation: sandbox.Isolation, start_seconds: float):
        self.start_seconds = start_seconds
        self.lock = threading.RLock()
        self.processes: dict[int, ForkedProcess] = {}
        self.next_id = 0
        self.alive = False
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        setup = {"tmpfs_bytes": TMPFS_BYTES, "public_dir": str(sandbox.PUBLIC_DIR), "site_dirs": site.getsitepackages(),
                 "kept_under_tmp": [str(path) for path in sandbox.bound_under_tmp()],
                 "own_user_namespace": isolation.drop_to_nobody}
        command = [sys.executable, "-I", "-S", untrusted_template.__file__, str(theirs.fileno()), json.dumps(setup)]
        command = sandbox.wrap(command, workdir=untrusted_template.WORKDIR, isolation=isolation, required=True,
                               capabilities=() if isolation.drop_to_nobody else TEMPLATE_CAPABILITIES)
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),), cwd="/", env=environment, start_new_session=True,
        )
        theirs.close()
        self.control = control
        try:
            message = self._receive(start_seconds)
            if message != {"ready": True}:
                raise TemplateUnavailable(f"the template did not start: {self._stderr()}")
            self.alive = True
            self._probe()
        except TemplateUnavailable:
            self.close()
            raise

    # --- messages -------------------------------------------------------------------------
    def _receive(self, timeout: float | None) -> dict | None:
        """One message, None when none came within `timeout`; the template's end is an error."""
        if not select.select([self.control], [], [], timeout)[0]:
            return None
        try:
            data = self.control.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.alive = False
            raise TemplateUnavailable("the template ended")
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if not (isinstance(message, dict) and len(message) <= 2
                and all(isinstance(k, str) and type(v) in (bool, int) for k, v in message.items())):
            raise TemplateUnavailable("the template sent a malformed message")
        return message

    def pump(self, timeout: float | None) -> None:
        """Handle what the template has sent (waiting up to `timeout` for the first message)."""
        with self.lock:
            try:
                message = self._receive(timeout) if self.alive else None
                while message is not None:
                    process = self.processes.get(message.get("exited"))
                    if process is not None and type(message.get("status")) is int:
                        process.returncode = message["status"]
                        del self.processes[process.id]
                    message = self._receive(0)
            except TemplateUnavailable:
                self._lost()

    def _lost(self) -> None:
        """The template is gone or misbehaves: end it, and with it every worker it forked."""
        self.alive = False
        self.close()
        for process in self.processes.values():
            process.returncode = 128 + signal.SIGKILL
        self.processes.clear()

    # --- workers --------------------------------------------------------------------------
    def fork(self, request_fd: int, reply_fd: int, output_fd: int, limits: dict[str, int]) -> ForkedProcess:
        """A new worker serving `request_fd`/`reply_fd`, printing to `output_fd`."""
        with self.lock:
            if not self.alive:
                raise TemplateUnavailable("the template ended")
            self.next_id += 1
            process = ForkedProcess(self, self.next_id)
            self.processes[process.id] = process
            try:
                socket.send_fds(self.control, [json.dumps({"op": "fork", "id": process.id, "limits": limits}).encode()],
                                [request_fd, reply_fd, output_fd])
            except OSError:
                self._lost()
                raise TemplateUnavailable("the template ended") from None
            deadline = time.monotonic() + self.start_seconds
            while time.monotonic() < deadline:
                message = self._receive(deadline - time.monotonic())
                if message is None:
                    break
                if message.get("forked") == process.id:
                    return process
                exited = self.processes.get(message.get("exited"))
                if exited is not None and type(message.get("status")) is int:
                    exited.returncode = message["status"]
                    del self.processes[exited.id]
            self._lost()
            raise TemplateUnavailable("the template did not fork a worker")

    def kill(self, process: ForkedProcess) -> None:
        with self.lock:
            try:
                self.control.send(json.dumps({"op": "kill", "id": process.id}).encode())
            except OSError:
                self._lost()

    def wait_for(self, process: ForkedProcess, timeout: float | None) -> None:
        """Until the template reports how `process` ended; past EXIT_SECONDS after a kill the
        template itself is ended (so nothing can be left running)."""
        deadline = time.monotonic() + (EXIT_SECONDS if timeout is None else timeout)
        while process.returncode is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timeout is not None:
                    raise subprocess.TimeoutExpired("worker", timeout)
                self._lost()
                return
            self.pump(remaining)

    def _probe(self) -> None:
        """Fork one worker that only sets itself up: proof that namespaces work here."""
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        try:
            process = self.fork(request_read, reply_write, output_write, {})
            for fd in (request_read, reply_write, output_write, request_write):
                os.close(fd)
            process.wait(self.start_seconds)
            if process.returncode != 0:
                reason = os.read(output_read, 4096).decode(errors="replace").strip()
                raise TemplateUnavailable(f"a forked worker could not be set up: {reason or process.returncode}")
        except subprocess.TimeoutExpired:
            raise TemplateUnavailable("a forked worker did not start") from None
        finally:
            for fd in (reply_read, output_read):
                os.close(fd)

    def _stderr(self) -> str:
        try:
            self.process.wait(timeout=5)
            return self.process.stderr.read().decode(errors="replace").strip()[-500:]
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return "no reason given"

    def close(self) -> None:
        self.alive = False
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.control.close()
        if self.process.stderr:
            self.process.stderr.close()


# Per process id, isolation and worker start: the template, or why there is none. (A process
# that grades under other settings, or a child forked from it, gets a template of its own.)
_shared: dict[tuple[int, sandbox.Isolation, str], TemplateClient | str] = {}
_shared_lock = threading.Lock()


def shared_template(environment: dict[str, str], isolation: sandbox.Isolation, worker_start: str,
                    start_seconds: float) -> TemplateClient | None:
    """This process's template, started on first use; None where workers start the classic way
    (`worker_start`: Settings.worker_start)."""
    key = (os.getpid(), isolation, worker_start)
    with _shared_lock:
        current = _shared.get(key)
        if isinstance(current, TemplateClient) and current.alive:
            return current
        if isinstance(current, str):
            return None
        reason = unavailable_reason(isolation, worker_start)
        if not reason:
            try:
                _shared[key] = TemplateClient(environment, isolation, start_seconds)
                return _shared[key]
            except (TemplateUnavailable, OSError) as error:
                reason = str(error)
        _shared[key] = reason
        return None


def unavailable_reason(isolation: sandbox.Isolation, worker_start: str) -> str:
    """Why workers cannot be forked from a template under `isolation` and `worker_start`
    (Settings.worker_start) before trying; empty when they may be (the template's start and
    probe then have the last word)."""
    if worker_start == "classic":
        return "VAE_WORKER_START=classic"
    if not isolation.sandboxed:
        return "no bubblewrap sandbox"
    if not isolation.drop_to_nobody and "--cap-add" not in isolation.options:
        return "this bwrap cannot let the template keep the capabilities it forks workers with (--cap-add)"
    return ""


def classic_reason(isolation: sandbox.Isolation, worker_start: str) -> str:
    """Why this process starts workers the classic way under `isolation` and `worker_start`;
    empty when it forks them (or has not started one yet)."""
    current = _shared.get((os.getpid(), isolation, worker_start))
    return current if isinstance(current, str) else ""
