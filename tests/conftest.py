"""What the project's tests share: the settings and isolation a grader would resolve here,
waiting for a condition, the hidden tests' points marker (some tests import hidden-test modules,
e.g. for their visible-check cases), and the package as users get it (benchmarks/installed.py):
the wheel built once per session from this checkout, and environments it is installed into (not
editable), for root and for an unprivileged user.

It imports only what the installed package holds (benchmarks/installed.py is imported by the
fixtures that use it): tests/test_installed.py runs test_redteam.py with it as another user
against the wheel."""
from __future__ import annotations

import ast
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder.isolation import sandbox
from autograder.secrets import PACKAGE_SECRETS
from autograder.settings import Settings

PROJECT = Path(__file__).resolve().parent.parent
# CI (.ci/run, as root with bubblewrap) must run what needs the unprivileged user, not skip it.
REQUIRED = os.environ.get("VAE_REQUIRE_SANDBOX") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the points a hidden test is worth (autograder/hidden_tests)")


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings every grading entry point resolves here (VAE_* variables included)."""
    return Settings.from_environment()


@pytest.fixture(scope="session")
def isolation(settings: Settings) -> sandbox.Isolation:
    """How workers are contained on this machine, resolved once from the settings, as every
    grading entry point does before it builds a Student."""
    return sandbox.detect(settings)


@pytest.fixture(scope="session")
def worker_start(settings: Settings) -> str:
    """How workers start here (Settings.worker_start), as a grading entry point passes it to a Student."""
    return settings.worker_start


def _wait_until(condition: Callable[[], object], seconds: float, step: float = 0.05) -> bool:
    """Poll `condition` until it holds or `seconds` have passed; whether it held. For a test that
    waits for processes to settle: it waits for what it checks, not for a fixed time."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@pytest.fixture(scope="session")
def wait_until() -> Callable[[Callable[[], object], float], bool]:
    return _wait_until


def not_available(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"VAE_REQUIRE_SANDBOX=1, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    from benchmarks import installed

    return installed.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed_bin(wheel, tmp_path_factory) -> Path:
    """bin/ of a fresh environment holding the wheel, for root (under /tmp, like pytest's folders)."""
    from benchmarks import installed

    return installed.make_environment(tmp_path_factory.mktemp("installed") / "venv", wheel)


@dataclass(frozen=True)
class Unprivileged:
    user: object  # pwd.struct_passwd
    bin: Path  # of an environment made with /usr/bin/python3, holding the wheel
    folder: Path  # readable by that user; removed after the session

    def environment(self, **extra: str) -> dict[str, str]:
        from benchmarks import installed

        return installed.user_environment(self.user, self.bin, **extra)

    def run(self, command: list[str], cwd: Path, timeout: float = 600, **extra: str):
        from benchmarks import installed

        return installed.run_as(self.user, command, cwd=cwd, environment=self.environment(**extra), timeout=timeout)

    def folder_of_theirs(self, name: str) -> Path:
        """A new folder in `folder` that the user owns."""
        path = self.folder / name
        path.mkdir()
        os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return path


@pytest.fixture(scope="session")
def unprivileged(wheel) -> Unprivileged:
    """An unprivileged user (made when missing), and an environment of theirs holding the wheel
    whose secrets (reference, hidden tests, catalogue) they own, as after their own install."""
    from benchmarks import installed

    if os.getuid() != 0:
        not_available("only root can run commands as another user")
    try:
        user = installed.unprivileged_user()
        folder = installed.shared_temporary_folder("vae-unprivileged-")
    except installed.NotAvailable as error:
        not_available(str(error))
    try:
        try:
            bin_folder = installed.make_environment(folder / "venv", wheel, installed.SYSTEM_PYTHON)
        except (installed.NotAvailable, FileNotFoundError) as error:
            not_available(f"no environment for the unprivileged user: {error}")
        site_packages = installed.site_packages(folder / "venv")
        for relative in PACKAGE_SECRETS:
            for root, _, files in os.walk(site_packages / relative):
                for path in [root, *(os.path.join(root, name) for name in files)]:
                    os.chown(path, user.pw_uid, user.pw_gid)  # written by pip, not linked: theirs alone
            if (site_packages / relative).is_file():
                os.chown(site_packages / relative, user.pw_uid, user.pw_gid)
        yield Unprivileged(user, bin_folder, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stub_source() -> str:
    """The reference module with every function and method body replaced by
    `raise NotImplementedError()`, as a student starts."""
    tree = ast.parse((PROJECT / "solutions" / "vae.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.body = [ast.Raise(exc=ast.Call(ast.Name("NotImplementedError"), [], []))]
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
