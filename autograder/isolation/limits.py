"""The one table of a worker's limits, whichever way it starts (a fresh sandboxed Python, or
forked from the template): the time budgets the grader enforces, and the resource limits the
kernel enforces on the worker's process. Plain data, nothing imported: the command line reads
its defaults from here without loading torch."""
from __future__ import annotations

from dataclasses import dataclass

TMPFS_BYTES = 256 * 2**20  # each of the worker's private /tmp and working folder
FILE_BYTES = 64 * 2**20  # RLIMIT_FSIZE: the largest file a worker may write
OPEN_FILES = 256  # RLIMIT_NOFILE
PROCESS_MARGIN = 512  # RLIMIT_NPROC: tasks (threads included) of the sandbox uid, or margin for one's own uid


@dataclass(frozen=True)
class Limits:
    call_seconds: float = 10.0  # one function call: correct code answers the hidden tests' small inputs in ms
    hung_call_seconds: float = 2.0  # each call once a call of the submission ran past call_seconds
    start_seconds: float = 60.0  # importing torch (a worker, or the template in a cold sandbox) and running the cells
    train_seconds: float = 240.0  # the model check: a small conv net takes ~20 s per 1000 steps
    submission_seconds: float = 900.0  # everything for one submission, restarts included
    memory_bytes: int = 4 * 2**30  # address space; torch alone maps about 1 GiB
    output_bytes: int = 4096  # of what the student printed, kept from the start and the end
    require_sandbox: bool = False  # refuse to run student code without bubblewrap


def resource_limits(limits: Limits, processes: int | None) -> dict[str, int]:
    """The worker's rlimits, by the names of `untrusted.template.LIMITS`; `processes` is
    RLIMIT_NPROC (None: not set, where it would do nothing)."""
    values = {"memory_bytes": limits.memory_bytes, "cpu_seconds": int(limits.submission_seconds) + 1,
              "core_bytes": 0, "file_bytes": FILE_BYTES, "open_files": OPEN_FILES}
    if processes is not None:
        values["processes"] = processes
    return values
