"""Numbers about the reference that cost seconds to compute, kept on disk between grading processes.

The reference VAE's held-out ELBO (model_check.py) takes a grading process about 3 s of CPU
to train, and every process (each job of a pool, each Dask worker, each `vae-assignment
grade`, each notebook `nbgrader autograde` runs) needs it. It depends only on the grading
sources, the torch build, the CPU kernels torch picks and its thread count, so it is stored
under a key naming all of them: anything else gets a value of its own, computed afresh.

A file is written whole (a temporary file, then a rename) and read back only when it holds a
finite number under the same key; a missing, damaged or unwritable cache only costs the
computation. The folder is `$VAE_ASSIGNMENT_CACHE`, else `$XDG_CACHE_HOME/vae-assignment`,
else `~/.cache/vae-assignment`; it is the grader's own (a worker's sandbox hides it).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Callable

import torch

from autograder.version import grader_version

CACHE_ENV = "VAE_ASSIGNMENT_CACHE"


def cache_folder() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae-assignment"


def cache_key(name: str) -> dict:
    """Everything the value called `name` depends on besides the code, and the code's hash."""
    return {"name": name, "grader": grader_version(), "torch": torch.__version__,
            "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
            "threads": torch.get_num_threads()}


def _path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_folder() / f"{key['name']}-{digest}.json"


def _stored(path: Path, key: dict) -> float | None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = stored.get("value") if type(stored) is dict and stored.get("key") == key else None
    return value if type(value) is float and math.isfinite(value) else None


def _store(path: Path, key: dict, value: float) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".", suffix=".tmp", delete=False) as file:
            json.dump({"key": key, "value": value}, file)
        os.replace(file.name, path)
    except OSError:
        pass  # read-only home, full disk: the next process computes it again


def cached_number(name: str, compute: Callable[[], float]) -> float:
    """The value of `compute()` stored under `name` and this grader's key, computed when absent."""
    key = cache_key(name)
    path = _path(key)
    value = _stored(path, key)
    if value is None:
        value = float(compute())
        _store(path, key, value)
    return value
