"""Run a command and measure it: wall time, and the peak memory of its whole process tree.

The memory is the sum of the resident set sizes of the command and all its descendants
(the pool processes and the sandboxed workers), sampled every 0.2 s. It counts pages that
several processes share (torch's libraries) once per process, so it overstates what the
machine needs; it is the figure that grows if a grader leaks or keeps too much alive.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # the benchmark only: the grader itself does not need it
    raise SystemExit("the benchmark samples memory with psutil: `pip install psutil` (into this "
                     "environment) and run it again") from None

SAMPLE_SECONDS = 0.2
# The grade command's last line: "... per submission 3.1 s: worker start 0.4 s, model
# training 2.2 s, tests 0.5 s" (autograder/outputs.py: timing_summary); each figure in s or ms.
_SPLIT = {key: re.compile(rf"{words} (\d+(?:\.\d+)?) (ms|s)\b") for key, words in
          {"total": "per submission", "worker_start": "worker start", "model_training": "model training",
           "tests": "tests"}.items()}


class PeakMemory:
    """Samples the summed RSS of some processes and their descendants on a thread, while open."""

    def __init__(self, pids: list[int], interval: float = SAMPLE_SECONDS):
        self.roots = [psutil.Process(pid) for pid in pids]
        self.interval = interval
        self.peak_bytes = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def _sample(self) -> None:
        processes: dict[int, psutil.Process] = {}
        for root in self.roots:
            try:
                processes.update({p.pid: p for p in [root, *root.children(recursive=True)]})
            except psutil.Error:  # the root has exited
                continue
        total = 0
        for process in processes.values():
            try:
                total += process.memory_info().rss
            except psutil.Error:  # exited meanwhile, or not ours to read
                continue
        self.peak_bytes = max(self.peak_bytes, total)
        self.peak_processes = max(self.peak_processes, len(processes))


@dataclass
class Measured:
    command: list[str]
    returncode: int
    wall_seconds: float
    peak_rss_mib: float
    peak_processes: int
    log: Path  # stdout and stderr of the command
    split: dict[str, float] = field(default_factory=dict)  # the grade command's per-submission split

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def run_measured(command: list[str], *, cwd: Path, env: dict[str, str], log: Path,
                 also_watch: list[int] = ()) -> Measured:
    """Run `command` to its end (output into `log`), timing it and sampling its memory together
    with the processes `also_watch` names (a Dask cluster that does the work)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
        with PeakMemory([process.pid, *also_watch]) as memory:
            returncode = process.wait()
        wall = time.perf_counter() - started
    measured = Measured(command, returncode, wall, memory.peak_bytes / 2**20, memory.peak_processes, log)
    measured.split = split_of(log.read_text(errors="replace"))
    return measured


def split_of(output: str) -> dict[str, float]:
    """Seconds per submission and their split, from the last line of `vae-assignment grade`
    that has them; {} when it has none (the grader failed, or its wording changed)."""
    lines = [line for line in output.splitlines() if "per submission" in line]
    if not lines:
        return {}
    split = {}
    for key, pattern in _SPLIT.items():
        found = pattern.search(lines[-1])
        if found:
            split[key] = float(found[1]) / (1000 if found[2] == "ms" else 1)
    return split
