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
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy

from autograder import reference_cache
from autograder.isolation.limits import PROCESS_MARGIN, TMPFS_BYTES
from autograder.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
UNTRUSTED_DIR = PROJECT_ROOT / "autograder" / "untrusted"
PUBLIC_DIR = PROJECT_ROOT / "assignment" / "public"
DIGITS = PUBLIC_DIR / "digits.npz"
SANDBOX_UID = SANDBOX_GID = 65534  # nobody / nogroup


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
    worker_start: str = "auto"  # "classic": never fork workers from a template (Settings.worker_start)

    @property
    def sandboxed(self) -> bool:
        return self.level == "bubblewrap"


def _ancestors(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/")]


def _secret_paths() -> list[Path]:
    """What must never be visible: the project and wherever its packages are installed."""
    secrets = {PROJECT_ROOT}
    for name in ("solutions", "autograder", "assignment"):
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


def training_digits() -> Path:
    """A copy of the public digits.npz without the held-out split, made once per data file in
    the grader's cache folder (looked up at every sandbox start: the folder may change) and
    bound over it in the sandbox: a submission that reads the data file to look up the
    held-out images finds none."""
    data = DIGITS.read_bytes()
    folder = reference_cache.cache_folder()
    path = folder / f"digits-train-{hashlib.sha256(data).hexdigest()[:16]}.npz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with numpy.load(DIGITS) as digits:
            train = {name: digits[name] for name in digits.files if name.startswith("train_")}
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".digits-train-", suffix=".npz")
        with os.fdopen(handle, "wb") as stream:
            numpy.savez(stream, **train)
        os.chmod(temporary, 0o644)  # the sandbox's uid reads it
        os.replace(temporary, path)
    return path


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


def bwrap_arguments(isolation: Isolation, workdir: str, shared: tuple[Path, ...] = ()) -> list[str]:
    """bubblewrap's part of the command line, up to and including `--`. `shared`: host folders
    also bound read-only at their own paths (a notebook's own folder, for its kernel)."""
    if isolation.drop_to_nobody:  # real root: no user namespace, the uid is dropped by setpriv
        arguments = [isolation.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try"]
    else:
        arguments = [isolation.bwrap, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID),
                     "--gid", str(SANDBOX_GID)]
        if "--disable-userns" in isolation.options:  # no nested user namespaces (bwrap >= 0.8)
            arguments.append("--disable-userns")
    arguments += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]

    def perms(mode: str) -> list[str]:
        return ["--perms", mode] if "--perms" in isolation.options else []

    def size(limit: int) -> list[str]:
        return ["--size", str(limit)] if "--size" in isolation.options else []

    # The private /tmp first, so that what is bound below it (a checkout or venv under /tmp) stays.
    arguments += [*perms("01777"), *size(TMPFS_BYTES), "--tmpfs", "/tmp"]
    read_only = read_only_paths()
    binds = [*read_only, UNTRUSTED_DIR, PUBLIC_DIR, *shared]
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
    arguments += ["--ro-bind", str(training_digits()), str(DIGITS)]
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
         shared: tuple[Path, ...] = ()) -> list[str]:
    """The command that runs `command` with `isolation` (unchanged without bwrap).
    Inherited file descriptors (the worker's pipes) stay open through bwrap."""
    if not isolation.sandboxed:
        if required:
            require(isolation)
        return list(command)
    return [*bwrap_arguments(isolation, workdir, shared), *command]


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


def _candidates() -> tuple[list[Isolation], str]:
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
    options = frozenset(o for o in ("--disable-userns", "--size", "--perms") if o in usage)
    candidates = []
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv", path="/usr/bin:/usr/sbin")
        if setpriv is not None:  # the real uid 65534, so that RLIMIT_NPROC applies
            candidates.append(Isolation("bubblewrap", bwrap=bwrap, drop_to_nobody=True, setpriv=setpriv, options=options))
    candidates.append(Isolation("bubblewrap", bwrap=bwrap, options=options))  # a user namespace
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
    each process that grades calls it once and passes the result down."""
    return _detect(settings.isolation, settings.worker_start)


@functools.lru_cache(maxsize=None)
def _detect(mode: str, worker_start: str) -> Isolation:
    candidates, reason = _candidates() if mode != "process" else ([], "VAE_ISOLATION=process")
    for candidate in candidates:
        reason = _probe(candidate)
        if not reason:
            return dataclasses.replace(candidate, worker_start=worker_start)
    return Isolation("process", reason=reason, worker_start=worker_start)


def describe(isolation: Isolation) -> str:
    """One line for the grader's output."""
    if isolation.sandboxed:
        user = "real uid 65534 (setpriv)" if isolation.drop_to_nobody else "uid 65534 in a user namespace"
        return f"bubblewrap ({user}; no network; own PID namespace; project and other submissions hidden)"
    return f"process (no OS sandbox: {isolation.reason})"
