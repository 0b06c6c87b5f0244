"""The package as users get it, for the tests and benchmarks that must not run the editable
checkout: a wheel built from this checkout, installed (not editable) into a fresh virtual
environment outside it, run by root or by an unprivileged user.

A new environment does not download anything: it gets this environment's dependencies as
hard links (copies where the file systems differ), without this package's own install, their
commands (nbgrader, jupyter, alembic, which nbgrader runs) written into its bin/ as pip
writes them, and the package itself from the wheel with pip (`--no-deps --no-index`). So it takes seconds,
and it holds exactly what the wheel installs plus the dependencies the checkout was tested
with. Its Python may be another 3.x installation of the same minor version (an unprivileged
user cannot run root's pyenv Python, under /root: they get /usr/bin/python3).
"""
from __future__ import annotations

import importlib.metadata
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "vae-assignment"
UNPRIVILEGED_USER = "vae-grader"  # made by unprivileged_user() where missing (root only)
SYSTEM_PYTHON = "/usr/bin/python3"  # a Python every user can run


class NotAvailable(Exception):
    """What a test or benchmark needs is missing here; the message says what."""


def source_files(checkout: Path = PROJECT) -> list[Path]:
    """The checkout's files as a clone would have them: tracked, or new and not ignored."""
    listed = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode()
    return sorted({checkout / name for name in listed.split("\0") if name and (checkout / name).is_file()})


def build_wheel(out: Path, checkout: Path = PROJECT) -> Path:
    """The wheel of `checkout`, built from a copy of its files (so that the build writes nothing
    into the checkout, and sees nothing a clone would not have), offline."""
    copy = out / "source"
    for path in source_files(checkout):
        target = copy / path.relative_to(checkout)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--wheel-dir", str(out), str(copy)], check=True, capture_output=True, text=True)
    [wheel] = out.glob("*.whl")
    return wheel


def _own_top_level_names() -> set[str]:
    """What this package's own install put into site-packages (an editable install's finder
    and .pth, its dist-info): left out of a new environment."""
    files = importlib.metadata.distribution(DISTRIBUTION).files or []
    return {Path(str(f)).parts[0] for f in files if not str(f).startswith("..")}


def _link_tree(source: Path, target: Path, skipped: set[str]) -> None:
    """`target` gets `source`'s entries as hard links, or copies across file systems."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for entry in source.iterdir():
        if entry.name in skipped or entry.name == "__pycache__":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target / entry.name, symlinks=True, copy_function=link_or_copy)
        else:
            link_or_copy(str(entry), str(target / entry.name))


def site_packages(environment: Path) -> Path:
    return environment / "lib" / "python{}.{}".format(*sys.version_info[:2]) / "site-packages"


def _write_commands(site: Path, bin_folder: Path) -> None:
    """bin/ scripts for the console entry points of the distributions in `site`, as pip writes them."""
    python = bin_folder / "python"
    for distribution in importlib.metadata.distributions(path=[str(site)]):
        for entry in distribution.entry_points.select(group="console_scripts"):
            script = bin_folder / entry.name
            if script.exists():
                continue
            module, _, attribute = entry.value.partition(":")
            target = f"from {module} import {attribute.split('.')[0]}" if attribute else f"import {module}"
            call = attribute.strip() or module
            script.write_text(f"#!{python}\nimport sys\n{target}\nif __name__ == '__main__':\n"
                              f"    sys.exit({call}())\n")
            script.chmod(0o755)


def make_environment(folder: Path, wheel: Path, python: str | None = None) -> Path:
    """A virtual environment in `folder` (made with `python`, else this environment's base
    Python) holding this environment's dependencies and the package installed from `wheel`.
    Returns its bin/ folder."""
    python = python or getattr(sys, "_base_executable", sys.executable)
    version = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
                             capture_output=True, text=True, check=True).stdout.strip()
    here = "{}.{}".format(*sys.version_info[:2])
    if version != here:
        raise NotAvailable(f"{python} is Python {version}; the dependencies here are built for {here}")
    subprocess.run([python, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    _link_tree(Path(sysconfig.get_paths()["purelib"]), site_packages(folder), _own_top_level_names())
    _write_commands(site_packages(folder), folder / "bin")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(folder / "bin" / "python"), "install",
                                "--quiet", "--no-deps", "--no-index", "--no-compile", str(wheel)],
                               capture_output=True, text=True)
    if installed.returncode != 0:
        raise RuntimeError(f"pip could not install {wheel.name}: {installed.stderr[-2000:]}")
    return folder / "bin"


def unprivileged_user(name: str = UNPRIVILEGED_USER) -> pwd.struct_passwd:
    """The unprivileged user `name`, made with useradd when missing (as root), with a home of
    mode 755 (the default of many shared servers). Safe to call from concurrent runs."""
    for attempt in range(20):
        try:
            user = pwd.getpwnam(name)
            break
        except KeyError:
            pass
        if os.getuid() != 0:
            raise NotAvailable(f"there is no user {name!r} and only root can add one")
        if shutil.which("useradd") is None:
            raise NotAvailable("useradd is not installed")
        added = subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name],
                               capture_output=True, text=True)
        if added.returncode not in (0, 9):  # 9: it exists (another run made it)
            time.sleep(0.5)  # /etc/passwd locked by a concurrent useradd
            if attempt == 19:
                raise NotAvailable(f"useradd {name} failed: {added.stderr.strip()}")
    Path(user.pw_dir).mkdir(mode=0o755, exist_ok=True)
    os.chown(user.pw_dir, user.pw_uid, user.pw_gid)
    os.chmod(user.pw_dir, 0o755)
    return user


def user_environment(user: pwd.struct_passwd, bin_folder: Path, **extra: str) -> dict[str, str]:
    """A clean environment for `user`'s commands: their home, the given bin/ first on PATH,
    one torch thread."""
    return {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name, "LANG": "C.UTF-8",
            "PATH": f"{bin_folder}:/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1", **extra}


def run_as(user: pwd.struct_passwd, command: list[str], *, cwd: Path, environment: dict[str, str],
           timeout: float) -> subprocess.CompletedProcess:
    """`command` run as `user` (its uid, gid and no other group), output captured as text."""
    return subprocess.run(command, cwd=cwd, env=environment, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                          capture_output=True, text=True, timeout=timeout)


def shared_temporary_folder(prefix: str) -> Path:
    """A new folder in the system's temporary folder that every user can read (mode 755),
    for what another user runs; the caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder
