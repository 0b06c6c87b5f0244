"""The settings are read from the environment in one place, and flags win over it."""
from pathlib import Path

from autograder.isolation import sandbox, template_client
from autograder.isolation.limits import Limits
from autograder.settings import Settings


def test_the_environment_is_read_into_the_settings_and_flags_win():
    settings = Settings.from_environment({"VAE_ISOLATION": "process", "VAE_WORKER_START": "classic",
                                          "VAE_ASSIGNMENT_CACHE": "/srv/cache"})
    assert (settings.isolation, settings.worker_start, settings.cache_folder) == ("process", "classic",
                                                                                  Path("/srv/cache"))
    assert Settings.from_environment({"XDG_CACHE_HOME": "/x"}).cache_folder == Path("/x/vae-assignment")
    assert Settings.from_environment({"VAE_ISOLATION": "bubblewrap please"}).isolation == "auto"
    limits = Limits(call_seconds=3)
    assert Settings.from_environment({}, limits=limits, isolation="process") == Settings(
        limits=limits, isolation="process", cache_folder=Settings.from_environment({}).cache_folder)


def test_process_isolation_and_classic_start_are_decided_by_the_settings_alone():
    isolation = sandbox.detect(Settings(isolation="process", worker_start="classic"))
    assert not isolation.sandboxed and isolation.reason == "VAE_ISOLATION=process"
    assert template_client.unavailable_reason(isolation) == "VAE_WORKER_START=classic"


def test_a_project_under_tmp_starts_workers_the_classic_way(monkeypatch):
    # A forked worker mounts a private /tmp: a checkout there would hide the data and the worker's code.
    monkeypatch.setattr(sandbox, "PUBLIC_DIR", Path("/tmp/checkout/assignment/public"))
    isolation = sandbox.Isolation("bubblewrap", bwrap="/usr/bin/bwrap", drop_to_nobody=True, setpriv="/usr/bin/setpriv")
    assert template_client.unavailable_reason(isolation) == (
        "the project is under /tmp, which every forked worker replaces with a private one")
