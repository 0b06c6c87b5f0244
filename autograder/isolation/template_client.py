"""The grader's side of the template (autograder/untrusted/template.py): a sandboxed process
that has imported torch once and forks each new worker in milliseconds.

One template per grading process, started on first use inside the same bubblewrap sandbox
as a classic worker and probed once (a forked worker must be able to make its own
namespaces). Where that is not possible (no bubblewrap, not root, a kernel that refuses
unprivileged user namespaces) `shared_template()` returns None and workers start the
classic way, each a fresh sandboxed Python. `Settings.worker_start = "classic"`
(VAE_WORKER_START=classic) forces that.

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
from pathlib import Path

from autograder.isolation import sandbox
from autograder.isolation.limits import TMPFS_BYTES
from autograder.untrusted import template as untrusted_template

TMP = Path("/tmp")
EXIT_SECONDS = 5.0  # for the template to report a killed worker's end


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
        command = [sys.executable, "-I", "-S", untrusted_template.__file__, str(theirs.fileno()), str(TMPFS_BYTES),
                   str(sandbox.PUBLIC_DIR), *site.getsitepackages()]
        command = sandbox.wrap(command, workdir=untrusted_template.WORKDIR, isolation=isolation, required=True)
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


_shared: dict[int, TemplateClient | str] = {}  # per process id: the template, or why there is none
_shared_lock = threading.Lock()


def shared_template(environment: dict[str, str], isolation: sandbox.Isolation,
                    start_seconds: float) -> TemplateClient | None:
    """This process's template, started on first use; None where workers start the classic way."""
    with _shared_lock:
        current = _shared.get(os.getpid())
        if isinstance(current, TemplateClient) and current.alive:
            return current
        if isinstance(current, str):
            return None
        reason = unavailable_reason(isolation)
        if not reason:
            try:
                _shared[os.getpid()] = TemplateClient(environment, isolation, start_seconds)
                return _shared[os.getpid()]
            except (TemplateUnavailable, OSError) as error:
                reason = str(error)
        _shared[os.getpid()] = reason
        return None


def unavailable_reason(isolation: sandbox.Isolation) -> str:
    """Why workers cannot be forked from a template under `isolation`; empty when they can be."""
    if isolation.worker_start == "classic":
        return "VAE_WORKER_START=classic"
    if not isolation.sandboxed:
        return "no bubblewrap sandbox"
    if not isolation.drop_to_nobody:
        return "not root: bubblewrap runs in a user namespace without nested ones (--disable-userns)"
    if any(path == TMP or TMP in path.parents for path in sandbox.read_only_paths()):
        return "Python is installed under /tmp, which every forked worker replaces with a private one"
    if any(path == TMP or TMP in path.parents for path in (sandbox.UNTRUSTED_DIR, sandbox.PUBLIC_DIR)):
        return "the project is under /tmp, which every forked worker replaces with a private one"
    return ""


def start_mode() -> str:
    """How this process starts workers: "template" (forked) or "classic" (a fresh Python each)."""
    current = _shared.get(os.getpid())
    return "template" if isinstance(current, TemplateClient) and current.alive else "classic"
