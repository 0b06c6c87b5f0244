"""Gradescope's autograder bundle (`vae-assignment gradescope-bundle`): setup.sh, run_autograder
(gradescope_run.py), pinned constraints and the project's source, in one zip.

Gradescope builds an image from the bundle once (it runs `setup.sh` as root on its Ubuntu
22.04 base image) and then runs `run_autograder` for every submission, which writes
results.json (gradescope.py). The bundle holds this project's source, hidden tests and
reference included: they exist only there and in the grader's own installation, never in the
student release.
"""
from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import shlex
import tomllib
import zipfile
from pathlib import Path

from assignment.contract import TOTAL_POINTS
from autograder.collect import UsageError
from autograder.secrets import PACKAGE_SECRETS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_AUTOGRADER = Path(__file__).resolve().with_name("gradescope_run.py")
BUNDLE_PROJECT = "vae-assignment"  # the folder of the bundle that holds the project's source
_SKIPPED = {"__pycache__", ".ipynb_checkpoints"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same project gives the same bundle
_VENV = "/opt/vae-assignment/venv"

# Runs once, as root, when Gradescope builds the image. The `@...@` fields are filled in by
# setup_script(). Python 3.11 comes from the deadsnakes PPA: Ubuntu 22.04 ships 3.10, and its
# own python3.11 package is a release candidate. It installs under /usr, which the sandbox
# mounts whole, so the sandboxed worker (uid 65534) can run it.
_SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope's setup.sh for the VAE assignment (written by `vae-assignment gradescope-bundle`):
# Python 3.11, bubblewrap (the sandbox for student code), and a virtual environment with
# torch @TORCH@ (CPU build) and this package, whose `vae-assignment` command run_autograder calls.
set -euxo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV=@VENV@
cd /  # so that nothing below imports from the current folder
export DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

apt-get update
apt-get install -y --no-install-recommends ca-certificates software-properties-common gpg-agent \
    bubblewrap util-linux
add-apt-repository -y ppa:deadsnakes/ppa
apt-get update
apt-get install -y --no-install-recommends python3.11 python3.11-venv

python3.11 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install "torch==@TORCH@" --index-url https://download.pytorch.org/whl/cpu
"$VENV/bin/python" -m pip install --constraint "$SOURCE/constraints.txt" "$SOURCE/@PROJECT@"
ln -sf "$VENV/bin/vae-assignment" /usr/local/bin/vae-assignment

# Gradescope's advice: what student code must not read (the hidden tests, the reference and
# the catalogue of mistakes) is closed to other users. The sandbox hides it anyway; this
# also holds for a worker run as an unprivileged user without one.
SITE="$("$VENV/bin/python" -c 'import pathlib, autograder; print(pathlib.Path(autograder.__file__).resolve().parent.parent)')"
chmod -R o= "$SOURCE" @SECRETS@

# For the build log: what grading gets here (isolation, worker start, who can read the
# hidden tests, torch); its problems are shown, but do not stop the build.
vae-assignment doctor || echo "vae-assignment doctor found the problems above (see the README, Gradescope)"

# Grade the reference once: the log shows the grader at work, and what it computes about the
# reference (its model's held-out ELBO, hypothesis's examples) stays in the image's cache, so
# each submission reads it instead of computing it (where Gradescope's CPUs match this one's).
vae-assignment grade "$SITE/solutions/vae.py" --db /tmp/setup-grades.sqlite --jobs 1
rm -f /tmp/setup-grades.sqlite
"""



def setup_script() -> str:
    """setup.sh, pinned to this environment's torch version (its CPU build)."""
    secrets = " ".join(f'"$SITE/{shlex.quote(relative)}"' for relative in PACKAGE_SECRETS)
    return (_SETUP_SH.replace("@TORCH@", importlib.metadata.version("torch").split("+")[0])
            .replace("@VENV@", _VENV).replace("@PROJECT@", BUNDLE_PROJECT).replace("@SECRETS@", secrets))


def constraints() -> str:
    """pip constraints: the versions of the package's dependencies installed here, so that
    Gradescope grades with the libraries this grader was tested with."""
    lines = []
    for requirement in importlib.metadata.requires("vae-assignment") or []:
        if ";" in requirement:  # an extra's, or for another platform
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        lines.append(f"{name}=={importlib.metadata.version(name).split('+')[0]}")
    return "\n".join(sorted(lines)) + "\n"


def top_level_packages(root: Path) -> list[str]:
    """The folders of `root` that pip installs as packages: those with an __init__.py that
    pyproject.toml's package finder does not exclude (tests, benchmarks)."""
    finder = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    return sorted(folder.name for folder in root.iterdir() if (folder / "__init__.py").is_file()
                  and not any(fnmatch.fnmatchcase(folder.name, pattern) for pattern in finder.get("exclude", [])))


def project_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """What pip needs to install the package from source: pyproject.toml, README.md (its
    readme) and the folders of its packages, hidden tests and reference included. Not the
    tests, the benchmarks, the release, .git or .venv."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise UsageError(f"the bundle is built from the project's source tree, and {root} has no "
                         "pyproject.toml (run it from a checkout: pip install -e .)")
    files = [pyproject, root / "README.md"]
    for top in top_level_packages(root):
        files += [path for path in (root / top).rglob("*") if path.is_file()
                  and not _SKIPPED & set(path.relative_to(root).parts) and path.suffix != ".pyc"]
    return sorted(files)


def write_bundle(out: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """Write the autograder zip: setup.sh and run_autograder at its root, constraints.txt, and
    the project's source under vae-assignment/. Returns the names in the zip."""
    if out.is_dir():
        raise UsageError(f"{out} is a folder: give the zip file to write, e.g. {out / 'autograder.zip'}")
    entries = {"setup.sh": (setup_script().encode(), 0o755),
               "run_autograder": (RUN_AUTOGRADER.read_bytes(), 0o755),
               "constraints.txt": (constraints().encode(), 0o644)}
    for path in project_files(root):
        entries[f"{BUNDLE_PROJECT}/{path.relative_to(root).as_posix()}"] = (path.read_bytes(), 0o644)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, data)
    partial.replace(out)
    return list(entries)


def main_bundle(out: Path) -> int:
    names = write_bundle(out)
    print(f"wrote {out} ({len(names)} files, {out.stat().st_size / 2**20:.1f} MiB): on Gradescope, create a "
          f"Programming Assignment worth {TOTAL_POINTS} points, then Configure Autograder > Zip file upload "
          "(base image Ubuntu 22.04)")
    return 0
