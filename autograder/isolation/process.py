"""A worker's process started the classic way: a fresh (already sandbox-wrapped) command in
its own session, with the worker's environment and rlimits from `limits.py`. Used for the
grader's workers when no template forks them, and for the nbgrader kernel's notebook runner."""
from __future__ import annotations

import os
import resource
import signal
import subprocess

from autograder.isolation.limits import Limits, resource_limits
from autograder.isolation.sandbox import Isolation, process_limit
from autograder.untrusted import template as untrusted_template


def worker_environment(home: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home,
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
    }


def worker_rlimits(limits: Limits, isolation: Isolation) -> dict[str, int]:
    """The rlimits of a worker under `isolation`, by the names of `untrusted.template.LIMITS`."""
    return resource_limits(limits, process_limit(isolation))


class ClassicProcess(subprocess.Popen):
    """A fresh Python for one worker; killing it kills its whole session."""

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_limited(command: list[str], workdir: str, limits: Limits, isolation: Isolation,
                  **popen: object) -> ClassicProcess:
    """`command` (already wrapped in the sandbox) in its own session, in `workdir`, with the
    worker's environment and rlimits."""
    rlimits = [(untrusted_template.LIMITS[name], value) for name, value in worker_rlimits(limits, isolation).items()]
    return ClassicProcess(command, cwd=workdir, env=worker_environment(workdir), start_new_session=True,
                          preexec_fn=lambda: [resource.setrlimit(r, (v, v)) for r, v in rlimits], **popen)
