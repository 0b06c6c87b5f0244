"""A Dask cluster on loopback for one benchmark run: a `dask scheduler` and W `dask worker`
processes of one thread each, started before the run and stopped after it."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 15


class ClusterError(Exception):
    """The cluster could not be started; the message says why."""


@dataclass(frozen=True)
class LocalCluster:
    address: str  # tcp://127.0.0.1:PORT
    pids: list[int]  # the scheduler's and the workers' (each the root of its process tree)


def require_distributed() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise ClusterError("grading through Dask needs its `distributed` package, which is not "
                           "installed in this environment (`pip install distributed`)")


@contextlib.contextmanager
def local_cluster(workers: int, folder: Path, env: dict[str, str]) -> Iterator[LocalCluster]:
    """A scheduler and `workers` one-thread workers on 127.0.0.1, logs in `folder`; all of them
    are stopped (their whole process groups) when the block ends, however it ends."""
    require_distributed()
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    dask = [sys.executable, "-m", "dask"]
    commands = {"scheduler": [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                              "--scheduler-file", str(scheduler_file)]}
    for i in range(workers):
        commands[f"worker{i}"] = [*dask, "worker", "--scheduler-file", str(scheduler_file),
                                  "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                                  "--no-dashboard", "--name", f"bench-{i}",
                                  "--local-directory", str(folder / f"worker{i}")]
    processes: list[subprocess.Popen] = []
    try:
        for name, command in commands.items():
            with (folder / f"{name}.log").open("w") as log:
                processes.append(subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            if name == "scheduler":
                address = _wait_for_address(scheduler_file, processes[0], folder / "scheduler.log")
        with Client(address, timeout=START_TIMEOUT_S) as client:
            try:
                client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
            except TimeoutError:
                raise ClusterError(f"the {workers} Dask worker(s) did not connect in {START_TIMEOUT_S} s "
                                   f"(logs in {folder})") from None
        yield LocalCluster(address, [p.pid for p in processes])
    finally:
        _stop(processes)


def _wait_for_address(scheduler_file: Path, scheduler: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            raise ClusterError(f"`dask scheduler` exited with {scheduler.returncode}:\n{tail}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(scheduler_file.read_text())["address"]
        time.sleep(0.2)
    raise ClusterError(f"`dask scheduler` wrote no address in {START_TIMEOUT_S} s (log: {log})")


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each process group (workers first: a nanny's worker is in its group), then
    SIGKILL to what is left."""
    for process in reversed(processes):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in reversed(processes):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
