"""What the other users of a shared machine (students among them) must not read, and whether
they can.

The sandbox hides the whole grader from student code (isolation/sandbox.py). The other users
of the machine are another matter: wherever this package is installed, the reference, the
hidden tests and the catalogue of mistakes (patches of the reference) must be closed to them,
and so must an nbgrader course's solution notebooks, students' submissions, feedback,
gradebook and exported grades. A home folder of mode 755, the default on many servers,
leaves all of them readable.

Closing the top of each (`chmod o= PATH`) is enough and breaks nothing: others can then
neither read nor enter it, while the sandbox binds what a worker needs at its own path, with
folders of its own above it. Imports nothing heavy (the Gradescope bundle's setup.sh is
written from `PACKAGE_SECRETS`).
"""
from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

# Relative to the folder holding the packages (a checkout, or site-packages), with what they are.
PACKAGE_SECRETS = {"solutions": "the reference", "autograder/hidden_tests": "the hidden tests",
                   "autograder/catalogue.py": "the catalogue of mistakes (patches of the reference)"}
# Relative to an nbgrader course folder; and every export (*.csv) at its top.
COURSE_SECRETS = {"source": "the source notebooks (with solutions)", "submitted": "the students' submissions",
                  "autograded": "the autograded submissions", "feedback": "the students' feedback",
                  "gradebook.db": "the gradebook"}


@dataclass(frozen=True)
class Secret:
    path: Path
    what: str


def package_secrets(packages_parent: Path) -> list[Secret]:
    """Those of the grader in `packages_parent`: a checkout as a whole (it also receives the
    solution notebooks that `release` and `make demo` write), else the three above."""
    if (packages_parent / "pyproject.toml").is_file():
        return [Secret(packages_parent, "the checkout (the reference, the hidden tests, the catalogue, and "
                                        "the solution notebooks `release` and `make demo` write into it)")]
    return [Secret(packages_parent / relative, what) for relative, what in PACKAGE_SECRETS.items()
            if (packages_parent / relative).exists()]


def course_secrets(course: Path) -> list[Secret]:
    found = [Secret(course / relative, what) for relative, what in COURSE_SECRETS.items() if (course / relative).exists()]
    return found + [Secret(path, "exported grades") for path in sorted(course.glob("*.csv"))]


def _others_may(mode: int, bits: int) -> bool:
    return mode & bits == bits


def readable_by_others(path: Path) -> bool:
    """Whether a user who is neither the owner nor in the group can read `path` (a file) or a
    file under it (a folder): every folder on the way enterable by others, the file readable."""
    path = path.absolute()
    try:
        if not all(_others_may(folder.stat().st_mode, stat.S_IXOTH) for folder in path.parents):
            return False
        mode = path.stat().st_mode
    except OSError:
        return False
    if not stat.S_ISDIR(mode):
        return _others_may(mode, stat.S_IROTH)
    if not _others_may(mode, stat.S_IXOTH):
        return False
    for root, folders, files in os.walk(path):
        for name in files:
            try:
                if _others_may(os.stat(os.path.join(root, name)).st_mode, stat.S_IROTH):
                    return True
            except OSError:
                pass
        folders[:] = [f for f in folders if _enterable(os.path.join(root, f))]
    return False


def _enterable(folder: str) -> bool:
    try:
        return _others_may(os.stat(folder).st_mode, stat.S_IXOTH)
    except OSError:
        return False


def exposed(secrets: list[Secret]) -> list[Secret]:
    return [secret for secret in secrets if readable_by_others(secret.path)]


def fix_command(secrets: list[Secret]) -> str:
    """The chmod that closes `secrets` to other users (with sudo for what this user does not own)."""
    paths = " ".join(shlex.quote(str(secret.path)) for secret in secrets)
    foreign = any(secret.path.stat().st_uid != os.getuid() for secret in secrets)
    return f"{'sudo ' if foreign and os.getuid() != 0 else ''}chmod o= {paths}"
