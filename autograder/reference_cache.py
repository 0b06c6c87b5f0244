"""What grading needs from the reference that costs seconds to compute, kept on disk between
grading processes.

Every grading process (each job of a pool, each Dask worker, each `vae-assignment grade`,
each notebook `nbgrader autograde` runs) needs the reference VAE's held-out ELBO (about 3 s
of training, model_check.py) and the hypothesis examples the reference is fed (about 4 s of
hypothesis, replay.py). They depend only on the grading sources, the versions of torch,
hypothesis and numpy, the CPU kernels torch picks and its thread count, so each is stored
under a key naming all of them: anything else gets a value of its own, computed afresh.

A file is written whole (a temporary file, then a rename) and read back only when it holds a
valid value under the same key; a missing, damaged or unwritable cache only costs the
computation. The folder is `Settings.cache_folder` (`$VAE_ASSIGNMENT_CACHE`, else
`$XDG_CACHE_HOME/vae-assignment`, else `~/.cache/vae-assignment`), set once per grading
process by `grading.prepare_process`; it is the grader's own (a worker's sandbox hides it).
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
from pathlib import Path
from typing import Callable, TypeVar

import hypothesis
import numpy
import torch

from autograder.files import write_atomically
from autograder.settings import Settings
from autograder.version import grader_version

T = TypeVar("T")
_folder: list[Path] = [Settings().cache_folder]  # this process's, set once from its settings


def use_folder(folder: Path) -> None:
    """Where this process keeps its cache from now on (Settings.cache_folder)."""
    _folder[0] = folder


def cache_folder() -> Path:
    return _folder[0]


def cache_key(name: str) -> dict:
    """Everything the value called `name` depends on besides the code, and the code's hash."""
    return {"name": name, "grader": grader_version(), "torch": torch.__version__,
            "hypothesis": hypothesis.__version__, "numpy": numpy.__version__,
            "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
            "threads": torch.get_num_threads()}


def _path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_folder() / f"{key['name']}-{digest}.json"


def _stored(path: Path, key: dict, from_json: Callable[[object], T]) -> T | None:
    try:
        stored = json.loads(path.read_text())
        if type(stored) is dict and stored.get("key") == key:
            return from_json(stored.get("value"))
    except (OSError, ValueError):
        pass
    return None


def _store(path: Path, key: dict, document: object) -> None:
    try:
        write_atomically(path, json.dumps({"key": key, "value": document}))
    except OSError:
        pass  # read-only home, full disk: the next process computes it again


def cached(name: str, compute: Callable[[], T], to_json: Callable[[T], object],
           from_json: Callable[[object], T]) -> T:
    """`compute()`, or what is stored under `name` and this grader's key. `to_json` gives a
    value's JSON document, `from_json` rebuilds it; both raise ValueError for what they cannot."""
    key = cache_key(name)
    path = _path(key)
    value = _stored(path, key, from_json)
    if value is None:
        value = compute()
        try:
            document = to_json(value)
        except ValueError:  # a value this format cannot keep exactly is computed every time
            return value
        _store(path, key, document)
    return value


def _finite_number(document: object) -> float:
    if type(document) is not float or not math.isfinite(document):
        raise ValueError("not a finite number")
    return document


def cached_number(name: str, compute: Callable[[], float]) -> float:
    """The number `compute()` returns, stored under `name` and this grader's key."""
    return cached(name, lambda: float(compute()), to_json=lambda value: value, from_json=_finite_number)
