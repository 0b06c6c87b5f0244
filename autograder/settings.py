"""The grader's settings, resolved once where a run starts and passed down, frozen.

The command line builds them from its flags with `Settings.from_environment(...)`; every
other entry point (the nbgrader preprocessor, Gradescope's run, a Dask worker through the
task it is sent, the tests) builds them through the same function. Nothing below reads an
environment variable:

- VAE_ISOLATION: `auto` (bubblewrap where it works here, the default) or `process` (never
  bubblewrap, process limits only) (`isolation`);
- VAE_WORKER_START: `auto` (forked from a template where possible, the default) or
  `classic` (a fresh sandboxed Python per worker) (`worker_start`);
- VAE_ASSIGNMENT_CACHE: the folder of values computed once per grader and machine, else
  $XDG_CACHE_HOME/vae-assignment, else ~/.cache/vae-assignment (`cache_folder`).

A value outside these raises `SettingsError`, naming the variable and the values it takes:
a typo must not quietly grade in another way than the one asked for.

Imports nothing heavy: the command line reads its defaults without loading torch.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autograder.isolation.limits import Limits

ISOLATION_ENV, WORKER_START_ENV, CACHE_ENV = "VAE_ISOLATION", "VAE_WORKER_START", "VAE_ASSIGNMENT_CACHE"
CHOICES = {"isolation": ("auto", "process"), "worker_start": ("auto", "classic")}  # the default first
VARIABLES = {"isolation": ISOLATION_ENV, "worker_start": WORKER_START_ENV}


class SettingsError(ValueError):
    """A setting has a value the grader does not know; the message names it and its values."""


def default_cache_folder(environment: Mapping[str, str]) -> Path:
    if environment.get(CACHE_ENV):
        return Path(environment[CACHE_ENV])
    return Path(environment.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae-assignment"


def _choice(name: str, value: str) -> str:
    if value not in CHOICES[name]:
        raise SettingsError(f"{VARIABLES[name]}={value!r} is not a value the grader knows: "
                            f"use {' or '.join(CHOICES[name])} (or leave it unset for {CHOICES[name][0]})")
    return value


@dataclass(frozen=True)
class Settings:
    limits: Limits = Limits()
    isolation: str = "auto"  # "auto": bubblewrap where it works here; "process": never
    worker_start: str = "auto"  # "auto": forked from a template where possible; "classic": never
    cache_folder: Path = field(default_factory=lambda: default_cache_folder({}))

    def __post_init__(self) -> None:
        for name in CHOICES:
            _choice(name, getattr(self, name))

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None, **fields: object) -> Settings:
        """The settings from `environment` (this process's when None), then `fields` (flags).
        Raises SettingsError for a value of VAE_ISOLATION or VAE_WORKER_START it does not know
        (an empty one counts as unset)."""
        environment = os.environ if environment is None else environment
        resolved = {name: _choice(name, environment.get(variable) or CHOICES[name][0])
                    for name, variable in VARIABLES.items()}
        return cls(**{**resolved, "cache_folder": default_cache_folder(environment), **fields})
