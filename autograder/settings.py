"""The grader's settings, resolved once where a run starts and passed down, frozen.

The command line builds them from its flags with `Settings.from_environment(...)`; every
other entry point (the nbgrader preprocessor, Gradescope's run, a Dask worker through the
task it is sent, the tests) builds them through the same function. Nothing below reads an
environment variable:

- VAE_ISOLATION=process: never bubblewrap, process limits only (`isolation`);
- VAE_WORKER_START=classic: a fresh sandboxed Python per worker, never forked from a
  template (`worker_start`);
- VAE_ASSIGNMENT_CACHE: the folder of values computed once per grader and machine, else
  $XDG_CACHE_HOME/vae-assignment, else ~/.cache/vae-assignment (`cache_folder`).

Imports nothing heavy: the command line reads its defaults without loading torch.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autograder.isolation.limits import Limits

ISOLATION_ENV, WORKER_START_ENV, CACHE_ENV = "VAE_ISOLATION", "VAE_WORKER_START", "VAE_ASSIGNMENT_CACHE"


def default_cache_folder(environment: Mapping[str, str]) -> Path:
    if environment.get(CACHE_ENV):
        return Path(environment[CACHE_ENV])
    return Path(environment.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae-assignment"


@dataclass(frozen=True)
class Settings:
    limits: Limits = Limits()
    isolation: str = "auto"  # "auto": bubblewrap where it works here; "process": never
    worker_start: str = "auto"  # "auto": forked from a template where possible; "classic": never
    cache_folder: Path = field(default_factory=lambda: default_cache_folder({}))

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None, **fields: object) -> Settings:
        """The settings from `environment` (this process's when None), then `fields` (flags)."""
        environment = os.environ if environment is None else environment
        resolved = {
            "isolation": "process" if environment.get(ISOLATION_ENV) == "process" else "auto",
            "worker_start": "classic" if environment.get(WORKER_START_ENV) == "classic" else "auto",
            "cache_folder": default_cache_folder(environment),
        }
        return cls(**{**resolved, **fields})
