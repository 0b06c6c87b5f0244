"""How the worker is isolated: bubblewrap when it works here, else process-level limits.

`detect()` says which isolation this machine gives (checked once per process, by starting
this Python in the sandbox); `wrap()` turns the worker's command into the sandboxed one. With
bubblewrap the worker sees a new root file system holding only what it needs, read-only:
the system libraries (/usr), the Python installation and its site-packages, and the
project's `autograder/untrusted/` and `assignment/public/` at their usual paths, with a
`digits.npz` that holds only the training split (the held-out images reach a worker only in
the model check's request). The project itself (the reference, the hidden tests), other
submissions and the grader's files are not mounted, so they do not exist inside. It also
gets no network, its own PID, IPC and UTS namespaces (every process it starts dies with it),
an unprivileged uid and a private, size-limited /tmp and working folder (tmpfs).

When the grader runs as root, bubblewrap runs without a user namespace and `setpriv` drops
the worker to the real uid/gid 65534 (nobody) with no capabilities: so RLIMIT_NPROC, which
the kernel never enforces for uid 0, limits its processes, and a way out of the mount
namespace would find an unprivileged process. Otherwise (not root, or that fails) bubblewrap
maps the grader's uid to 65534 in a user namespace of its own.

The resource limits themselves (address space, CPU time, file size, open files, processes)
are rlimits set on the worker's process before exec (process.py, or the template for a
forked worker); they are inherited through bubblewrap. Their values are in limits.py.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy

from autograder.isolation.limits import PROCESS_MARGIN, TMPFS_BYTES
from autograder.settings import Settings
from autograder.version import PROJECT_PACKAGES

PACKAGES_PARENT = Path(__file__).resolve().parents[2]  # the checkout, or site-packages where installed
UNTRUSTED_DIR = PACKAGES_PARENT / "autograder" / "untrusted"
PUBLIC_DIR = PACKAGES_PARENT / "assignment" / "public"
DIGITS = PUBLIC_DIR / "digits.npz"
SANDBOX_UID = SANDBOX_GID = 65534  # nobody / nogroup
TMP = Path("/tmp")


class SandboxUnavailable(RuntimeError):
    """The sandbox was required (--require-sandbox) but bubblewrap cannot run here."""


@dataclass(frozen=True)
class Isolation:
    level: str  # "bubblewrap" or "process"
    reason: str = ""  # why bubblewrap is not used (empty when it is)
    bwrap: str | None = None  # path of the bwrap binary
    drop_to_nobody: bool = False  # root: no user namespace, setpriv to the real uid 65534
    setpriv: str | None = None
    options: frozenset = frozenset()  # optional bwrap flags this version knows (--size, --disable-userns, ...)
    training_digits: Path | None = None  # bound over digits.npz: the training split only (training_digits_path)

    @property
    def sandboxed(self) -> bool:
        return self.level == "bubblewrap"


def _ancestors(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/")]


def _secret_paths() -> list[Path]:
    """What must never be visible: wherever the project's packages are installed, and the
    checkout they come from (not the site-packages folder that holds an installed copy)."""
    secrets = {PACKAGES_PARENT} if (PACKAGES_PARENT / "pyproject.toml").is_file() else set()
    for name in PROJECT_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec else []:
            secrets.add(Path(location).resolve())
    return sorted(secrets)


def read_only_paths() -> list[Path]:
    """Host paths the worker needs to read, symlinks resolved, without duplicates."""
    import site

    wanted = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent,
              *map(Path, site.getsitepackages())]
    resolved = sorted({p.resolve() for p in wanted if p.exists()})
    # Keep only outermost paths (a venv's site-packages inside an already bound prefix, ...).
    outer = [p for p in resolved if not any(q != p and q in p.parents for q in resolved)]
    return [p for p in outer if p != Path("/usr") and Path("/usr") not in p.parents]  # /usr is bound whole


def training_digits_path(folder: Path) -> Path:
    """Where the copy of the public digits.npz without its held-out split lives: in `folder`
    (the grader's cache folder, `Settings.cache_folder`), named after the data file's hash.
    It is bound over digits.npz in the sandbox: a submission that reads the data file to look
    up the held-out images finds none."""
    return folder / f"digits-train-{hashlib.sha256(DIGITS.read_bytes()).hexdigest()[:16]}.npz"


def ensure_training_digits(path: Path) -> Path:
    """Write the training-only copy at `path` unless it is there (checked at every sandbox
    start: a cache folder may be cleaned while grading)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with numpy.load(DIGITS) as digits:
            train = {name: digits[name] for name in digits.files if name.startswith("train_")}
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".digits-train-", suffix=".npz")
        with os.fdopen(handle, "wb") as stream:
            numpy.savez(stream, **train)
        os.chmod(temporary, 0o644)  # the sandbox's uid reads it
        os.replace(temporary, path)
    return path


def bound_paths(shared: tuple[Path, ...] = ()) -> list[Path]:
    """The host folders bound read-only at their own paths (besides the system's): the Python
    installation, the worker's code and data, and `shared`."""
    return [*read_only_paths(), UNTRUSTED_DIR, PUBLIC_DIR, *shared]


def bound_under_tmp(shared: tuple[Path, ...] = ()) -> list[Path]:
    """The outermost bound folders that lie under /tmp (a checkout, a venv or a Python
    installed there): a forked worker, which mounts a private /tmp of its own, binds them
    again on it, so it finds them where a classic worker does."""
    under = [path for path in bound_paths(shared) if TMP in path.parents]
    return sorted({p for p in under if not any(q in p.parents for q in under)})


def _system_arguments() -> list[str]:
    arguments = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            arguments += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            arguments += ["--ro-bind", name, name]
    if os.path.exists("/etc/ld.so.cache"):
        arguments += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    if os.path.isdir("/etc/fonts"):  # matplotlib's fontconfig, else its error lands in feedback
        arguments += ["--ro-bind", "/etc/fonts", "/etc/fonts"]
    return arguments


def bwrap_arguments(isolation: Isolation, workdir: str, shared: tuple[Path, ...] = (),
                    capabilities: tuple[str, ...] = ()) -> list[str]:
    """bubblewrap's part of the command line, up to and including `--`. `shared`: host folders
    also bound read-only at their own paths (a notebook's own folder, for its kernel).
    `capabilities`: kept by the sandboxed process inside bubblewrap's user namespace (only
    there: never for a root grader, where they would be real); the worker template's, which
    it needs to give each worker namespaces of its own (see template_client.py)."""
    if isolation.drop_to_nobody:  # real root: no user namespace, the uid is dropped by setpriv
        if capabilities:
            raise ValueError("capabilities are kept only inside bubblewrap's user namespace")
        arguments = [isolation.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try"]
    else:
        arguments = [isolation.bwrap, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID),
                     "--gid", str(SANDBOX_GID)]
        if "--disable-userns" in isolation.options:  # no nested user namespaces (bwrap >= 0.8)
            arguments.append("--disable-userns")
        for capability in capabilities:
            arguments += ["--cap-add", capability]
    arguments += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]

    def perms(mode: str) -> list[str]:
        return ["--perms", mode] if "--perms" in isolation.options else []

    def size(limit: int) -> list[str]:
        return ["--size", str(limit)] if "--size" in isolation.options else []

    # The private /tmp first, so that what is bound below it (a checkout or venv under /tmp) stays.
    arguments += [*perms("01777"), *size(TMPFS_BYTES), "--tmpfs", "/tmp"]
    read_only = read_only_paths()
    binds = bound_paths(shared)
    directories = {a for p in [*binds, Path(workdir)] for a in _ancestors(p)} | {Path("/etc")}
    for directory in sorted(directories - set(binds) - {Path("/tmp")}):  # else bwrap makes them 0700
        if not os.path.islink(directory):
            arguments += [*perms("0755"), "--dir", str(directory)]
    arguments += _system_arguments()
    secrets, covered = _secret_paths(), []
    for path in read_only:
        arguments += ["--ro-bind", str(path), str(path)]
        for secret in secrets:  # e.g. a non-editable install, or a venv folder that holds the project
            if secret == path or path in secret.parents:
                arguments += [*perms("0755"), *size(2**20), "--tmpfs", str(secret)]
                covered.append(secret)
    for path in (UNTRUSTED_DIR, PUBLIC_DIR, *shared):
        arguments += ["--ro-bind", str(path), str(path)]
    if isolation.training_digits is None:
        raise ValueError("a bubblewrap Isolation names its training-only digits file (detect() sets it)")
    arguments += ["--ro-bind", str(ensure_training_digits(isolation.training_digits)), str(DIGITS)]
    for secret in covered:
        arguments += ["--remount-ro", str(secret)]
    arguments += ["--proc", "/proc", "--dev", "/dev",
                  *perms("01777"), *size(TMPFS_BYTES), "--tmpfs", workdir,
                  "--chdir", workdir, "--"]
    if isolation.drop_to_nobody:
        arguments += [isolation.setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_GID}", "--clear-groups",
                      "--inh-caps=-all", "--bounding-set=-all", "--"]
    return arguments


def require(isolation: Isolation) -> None:
    """Raise SandboxUnavailable unless `isolation` is bubblewrap."""
    if not isolation.sandboxed:
        raise SandboxUnavailable(f"the sandbox is required but bubblewrap cannot be used: {isolation.reason}")


def wrap(command: list[str], *, workdir: str, isolation: Isolation, required: bool = False,
         shared: tuple[Path, ...] = (), capabilities: tuple[str, ...] = ()) -> list[str]:
    """The command that runs `command` with `isolation` (unchanged without bwrap).
    Inherited file descriptors (the worker's pipes) stay open through bwrap."""
    if not isolation.sandboxed:
        if required:
            require(isolation)
        return list(command)
    return [*bwrap_arguments(isolation, workdir, shared, capabilities), *command]


def process_limit(isolation: Isolation) -> int | None:
    """RLIMIT_NPROC for a worker: it counts every task of the worker's real uid, so for the
    grader's own uid it is what that uid runs now plus a margin; None where it does nothing (root)."""
    if isolation.drop_to_nobody:
        return PROCESS_MARGIN
    uid = os.getuid()
    if uid == 0:
        return None
    return _tasks_of(uid) + PROCESS_MARGIN


def _tasks_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count


def _candidates(training_digits: Path) -> tuple[list[Isolation], str]:
    """The sandboxes worth probing, best first, or the reason there are none."""
    if not sys.platform.startswith("linux"):
        return [], "bubblewrap needs Linux"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return [], "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"bwrap --help failed: {error}"
    options = frozenset(o for o in ("--disable-userns", "--size", "--perms", "--cap-add") if o in usage)
    candidates = []
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv", path="/usr/bin:/usr/sbin")
        if setpriv is not None:  # the real uid 65534, so that RLIMIT_NPROC applies
            candidates.append(Isolation("bubblewrap", bwrap=bwrap, drop_to_nobody=True, setpriv=setpriv,
                                        options=options, training_digits=training_digits))
    candidates.append(Isolation("bubblewrap", bwrap=bwrap, options=options,
                                training_digits=training_digits))  # a user namespace
    return candidates, ""


def _probe(candidate: Isolation) -> str:
    """Why this Python fails to start in the candidate sandbox; empty when it runs."""
    workdir = tempfile.mkdtemp(prefix="vae-probe-")
    try:
        probe = subprocess.run(
            [*bwrap_arguments(candidate, workdir), sys.executable, "-I", "-S", "-c", "pass"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap did not run: {error}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if probe.returncode != 0:
        message = probe.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap failed here: {message[-1] if message else probe.returncode}"
    return ""


def detect(settings: Settings = Settings()) -> Isolation:
    """The isolation this machine gives under `settings`: the first bubblewrap set-up in which
    this Python starts, else process isolation (with the reason). Probed once per process:
    each process that grades calls it once and passes the result down. The training-only
    digits file it binds is kept in `settings.cache_folder`."""
    return _detect(settings.isolation, settings.cache_folder)


@functools.lru_cache(maxsize=None)
def _detect(mode: str, cache_folder: Path) -> Isolation:
    if mode == "process":
        return Isolation("process", reason="VAE_ISOLATION=process")
    candidates, reason = _candidates(training_digits_path(cache_folder))
    for candidate in candidates:
        reason = _probe(candidate)
        if not reason:
            return candidate
    return Isolation("process", reason=reason)


def describe(isolation: Isolation) -> str:
    """One line for the grader's output."""
    if isolation.sandboxed:
        user = "real uid 65534 (setpriv)" if isolation.drop_to_nobody else "uid 65534 in a user namespace"
        return f"bubblewrap ({user}; no network; own PID namespace; project and other submissions hidden)"
    return f"process (no OS sandbox: {isolation.reason})"
