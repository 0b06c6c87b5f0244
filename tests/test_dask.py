"""Grading on a Dask cluster: a real `dask scheduler` and two `dask worker` processes on loopback,
one of them killed with SIGKILL while it grades; the JSON must equal local grading's.

The workers run without a nanny: a nanny would restart the killed worker at once, while a
lost machine of a real cluster does not come back, so its tasks must be graded elsewhere.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

distributed = pytest.importorskip("distributed")

from autograder.catalogue import MISTAKES, build_source  # noqa: E402

pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parent.parent


def _scheduler_address(scheduler_file: Path) -> str | None:
    """The address in the scheduler's file, once the file is there and written whole."""
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def _start(command: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def cluster(tmp_path, wait_until):
    """(scheduler address, {worker name: its process}, a client); every process is killed after."""
    scheduler_file = tmp_path / "scheduler.json"
    processes = [_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                         "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                        tmp_path / "scheduler.log", tmp_path)]
    workers = {}
    client = None
    try:
        assert wait_until(lambda: _scheduler_address(scheduler_file), 60), "the scheduler wrote no address"
        address = _scheduler_address(scheduler_file)
        for name in ("w1", "w2"):
            workers[name] = _start([sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name,
                                    "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--no-dashboard",
                                    "--memory-limit", "0", "--local-directory", str(tmp_path / name)],
                                   tmp_path / f"{name}.log", tmp_path)
            processes.append(workers[name])
        client = distributed.Client(address, timeout="30s")
        client.wait_for_workers(2, timeout=120)
        yield address, workers, client
    finally:
        if client is not None:
            client.close()
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """Six submissions: the reference, three catalogued mistakes, a stub and an empty file."""
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(PROJECT / "solutions" / "vae.py", folder / "ada.py")
    for name in ("kl_missing_half", "bll_sign", "iwae_missing_log_k"):
        (folder / f"{name}.py").write_text(build_source(next(m for m in MISTAKES if m.name == name)))
    (folder / "stub.py").write_text("def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):\n"
                                    "    raise NotImplementedError()\n")
    (folder / "empty.py").write_text("")
    return folder


def _grade(folder: Path, work: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "autograder.cli", "grade", str(folder), "--json", str(work / "grades.json"),
               "--db", str(work / "grades.sqlite"), *extra]
    return subprocess.Popen(command, cwd=work, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stored(database: Path) -> int:
    try:
        with sqlite3.connect(database, timeout=30) as db:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_a_killed_worker_loses_nothing_and_scores_equal_local_grading(cluster, class_folder, tmp_path, wait_until):
    address, workers, client = cluster
    on_dask, local = tmp_path / "dask", tmp_path / "local"
    on_dask.mkdir()
    local.mkdir()
    grader = _grade(class_folder, on_dask, "--scheduler", address)
    wait_until(lambda: _stored(on_dask / "grades.sqlite") >= 2 or grader.poll() is not None, 240)
    busy = [address for address, tasks in client.processing().items() if tasks]
    names = {address: info["name"] for address, info in client.scheduler_info()["workers"].items()}
    assert busy, "no worker was grading halfway through"
    victim = workers[names[busy[0]]]
    sandboxes = psutil.Process(victim.pid).children(recursive=True)  # its template and workers
    victim.kill()  # SIGKILL, mid-submission: as a machine of the cluster that is lost
    out, err = grader.communicate(timeout=300)
    assert grader.returncode == 0, err
    assert "on the Dask cluster at" in out and "graded 6 submission(s)" in out
    assert len(client.scheduler_info()["workers"]) == 1

    def running() -> list:
        return [p for p in sandboxes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    wait_until(lambda: not running(), 15)  # the killed worker's sandboxes go with it
    assert running() == []

    local_grader = _grade(class_folder, local, "--jobs", "2")
    _, err = local_grader.communicate(timeout=300)
    assert local_grader.returncode == 0, err
    assert (on_dask / "grades.json").read_bytes() == (local / "grades.json").read_bytes()


def test_an_unreachable_scheduler_is_a_usage_error(class_folder, tmp_path):
    result = subprocess.run([sys.executable, "-m", "autograder.cli", "grade", str(class_folder / "empty.py"),
                             "--db", str(tmp_path / "g.sqlite"), "--scheduler", "tcp://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert result.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
