"""The settings are read from the environment in one place, flags win over it, and a value the
grader does not know is an error that names the variable, reported in one line."""
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.cli import main
from autograder.isolation import sandbox, template_client
from autograder.isolation.limits import Limits
from autograder.pipeline import EXIT_USAGE
from autograder.settings import Settings, SettingsError


def test_the_environment_is_read_into_the_settings_and_flags_win():
    settings = Settings.from_environment({"VAE_ISOLATION": "process", "VAE_WORKER_START": "classic",
                                          "VAE_ASSIGNMENT_CACHE": "/srv/cache"})
    assert (settings.isolation, settings.worker_start, settings.cache_folder) == ("process", "classic",
                                                                                  Path("/srv/cache"))
    assert Settings.from_environment({"XDG_CACHE_HOME": "/x"}).cache_folder == Path("/x/vae-assignment")
    unset = Settings.from_environment({"VAE_ISOLATION": "", "VAE_WORKER_START": ""})  # empty counts as unset
    assert (unset.isolation, unset.worker_start) == ("auto", "auto")
    limits = Limits(call_seconds=3)
    assert Settings.from_environment({}, limits=limits, isolation="process") == Settings(
        limits=limits, isolation="process", cache_folder=Settings.from_environment({}).cache_folder)


@pytest.mark.parametrize("variable, value, allowed", [
    ("VAE_ISOLATION", "bubblewrap please", "use auto or process"),
    ("VAE_ISOLATION", "Process", "use auto or process"),
    ("VAE_WORKER_START", "forked", "use auto or classic"),
])
def test_an_unknown_value_is_an_error_naming_the_variable_and_its_values(variable, value, allowed):
    with pytest.raises(SettingsError, match=f"{variable}='{value}' is not a value the grader knows: {allowed}"):
        Settings.from_environment({variable: value})
    field = {"VAE_ISOLATION": "isolation", "VAE_WORKER_START": "worker_start"}[variable]
    with pytest.raises(SettingsError, match=variable):  # built in code, too
        Settings(**{field: value})


@pytest.mark.parametrize("command", [["grade", "nothing.py"], ["validate"], ["demo"], ["doctor"]])
def test_every_command_reports_an_unknown_value_in_one_line_with_exit_status_2(monkeypatch, capsys, command):
    monkeypatch.setenv("VAE_ISOLATION", "sandbox")
    assert main(command) == EXIT_USAGE
    error = capsys.readouterr().err
    assert error.strip().splitlines() == [f"vae-assignment {command[0]}: VAE_ISOLATION='sandbox' is not a value the "
                                          "grader knows: use auto or process (or leave it unset for auto)"]


def test_the_installed_command_says_it_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "autograder.cli", "grade", str(tmp_path)], capture_output=True,
                          text=True, env={"VAE_WORKER_START": "fork", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == EXIT_USAGE
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "VAE_WORKER_START='fork'" in done.stderr


def test_process_isolation_and_classic_start_are_decided_by_the_settings_alone():
    settings = Settings(isolation="process", worker_start="classic")
    isolation = sandbox.detect(settings)
    assert not isolation.sandboxed and isolation.reason == "VAE_ISOLATION=process"
    assert template_client.unavailable_reason(isolation, settings.worker_start) == "VAE_WORKER_START=classic"
    assert not hasattr(isolation, "worker_start")  # how workers start is a setting, not the sandbox's


def test_the_sandbox_keeps_its_training_data_in_the_settings_cache_folder(tmp_path):
    isolation = sandbox.detect(Settings(cache_folder=tmp_path / "cache"))
    if not isolation.sandboxed:
        pytest.skip(f"bubblewrap is not usable here: {isolation.reason}")
    assert isolation.training_digits.parent == tmp_path / "cache" and isolation.training_digits.is_file()
    isolation.training_digits.unlink()  # a cache cleaned while grading: made again at the next start
    command = sandbox.wrap(["true"], workdir=str(tmp_path), isolation=isolation)
    assert isolation.training_digits.is_file() and str(isolation.training_digits) in command


@pytest.mark.parametrize("root", [False, True], ids=["unprivileged", "root"])
def test_a_project_under_tmp_is_no_reason_to_start_workers_the_classic_way(monkeypatch, root):
    # A forked worker mounts a private /tmp and binds again on it what the sandbox bound under /tmp.
    monkeypatch.setattr(sandbox, "PUBLIC_DIR", Path("/tmp/checkout/assignment/public"))
    monkeypatch.setattr(sandbox, "UNTRUSTED_DIR", Path("/tmp/checkout/autograder/untrusted"))
    monkeypatch.setattr(sandbox, "read_only_paths", lambda: [Path("/tmp/python"), Path("/opt/python")])
    isolation = sandbox.Isolation("bubblewrap", bwrap="/usr/bin/bwrap", drop_to_nobody=root,
                                  setpriv="/usr/bin/setpriv" if root else None, options=frozenset({"--cap-add"}))
    assert template_client.unavailable_reason(isolation, "auto") == ""
    assert sandbox.bound_under_tmp() == [Path("/tmp/checkout/assignment/public"),
                                         Path("/tmp/checkout/autograder/untrusted"), Path("/tmp/python")]
    assert sandbox.bound_under_tmp((Path("/tmp/checkout"),)) == [Path("/tmp/checkout"), Path("/tmp/python")]


def test_an_unprivileged_template_needs_a_bwrap_that_lets_it_keep_capabilities():
    old_bwrap = sandbox.Isolation("bubblewrap", bwrap="/usr/bin/bwrap", options=frozenset({"--disable-userns"}))
    assert "--cap-add" in template_client.unavailable_reason(old_bwrap, "auto")
    root = sandbox.Isolation("bubblewrap", bwrap="/usr/bin/bwrap", drop_to_nobody=True, setpriv="/usr/bin/setpriv")
    assert template_client.unavailable_reason(root, "auto") == ""  # root's template keeps none
    with pytest.raises(ValueError, match="only inside bubblewrap's user namespace"):
        sandbox.bwrap_arguments(root, "/tmp/w", capabilities=template_client.TEMPLATE_CAPABILITIES)


def test_a_process_that_once_could_not_fork_workers_still_may_under_other_settings():
    # Why workers start the classic way is kept per isolation and worker start: grading once
    # unsandboxed (e.g. the doctor under VAE_ISOLATION=process) must not make this process start
    # every later sandboxed worker the classic way.
    unsandboxed = sandbox.Isolation("process", reason="VAE_ISOLATION=process")
    assert template_client.shared_template({}, unsandboxed, "auto", 1.0) is None
    assert template_client.classic_reason(unsandboxed, "auto") == "no bubblewrap sandbox"
    root = sandbox.Isolation("bubblewrap", bwrap="/usr/bin/bwrap", drop_to_nobody=True, setpriv="/usr/bin/setpriv")
    assert template_client.classic_reason(root, "auto") == ""
