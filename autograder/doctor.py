"""`vae-assignment doctor`: what grading gets on this machine, as this user; run it first.

- isolation: whether student code runs in bubblewrap here, how, and if not, why;
- worker start: forked from a template or a fresh Python each, why, and the time measured by
  starting a few empty workers;
- secrets: whether other users can read the reference, the hidden tests and the catalogue
  where this package lies, and an nbgrader course's solutions, submissions, feedback,
  gradebook and exports (`secrets.py`), with the chmod that closes them;
- torch: version, build, CPU kernels, threads.

Exit status 1 when student code would run unsandboxed or a secret is readable by others,
else 0 (a slow worker start is a warning).
"""
from __future__ import annotations

import os
import pwd
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder import secrets
from autograder.isolation import sandbox, template_client
from autograder.settings import Settings

WORKERS_MEASURED = 5  # after the first, which also starts the template
SLOW_START_SECONDS = 0.5  # a forked worker starts in tens of ms, a fresh Python in 1-3 s
EXIT_OK, EXIT_PROBLEM = 0, 1


@dataclass
class Finding:
    status: str  # "ok", "warn", "FAIL" (counts against the exit status) or "info"
    title: str
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerStarts:
    path: str  # "template" or "classic"
    first_seconds: float  # the first worker, with the template's own start
    median_seconds: float  # of the workers after it
    count: int
    reason: str  # why the classic way ("" for the template)


def measure_worker_starts(settings: Settings, isolation: sandbox.Isolation, count: int) -> WorkerStarts:
    """Start 1 + `count` empty workers one after the other, as grading would, and time them."""
    from autograder.worker_client import Worker  # imports torch

    seconds, paths = [], set()
    for _ in range(1 + count):
        started = time.perf_counter()
        worker = Worker([], settings.limits, isolation, settings.worker_start)
        seconds.append(time.perf_counter() - started)
        paths.add(worker.start_path)
        worker.close()
    path = "template" if paths == {"template"} else "classic"
    reason = "" if path == "template" else (template_client.classic_reason(isolation, settings.worker_start)
                                            or "some workers could not be forked")
    return WorkerStarts(path, seconds[0], statistics.median(seconds[1:]), count, reason)


def isolation_finding(isolation: sandbox.Isolation) -> Finding:
    if isolation.sandboxed:
        return Finding("ok", f"isolation: {sandbox.describe(isolation)}")
    return Finding("FAIL", f"isolation: {sandbox.describe(isolation)}",
                   ["student code would run as this user with process limits only, able to read what this user "
                    "reads (the hidden tests and the reference included)",
                    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and check that this kernel allows "
                    "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone / "
                    "user.max_user_namespaces), or grade with --require-sandbox to refuse"])


def worker_start_finding(starts: WorkerStarts) -> Finding:
    median_ms, count = 1000 * starts.median_seconds, starts.count
    if starts.path == "template":
        status = "ok" if starts.median_seconds <= SLOW_START_SECONDS else "warn"
        return Finding(status, f"worker start: forked from a template: {median_ms:.0f} ms median over {count} "
                               f"workers (the template itself started in {starts.first_seconds:.1f} s, once per "
                               "grading process)")
    return Finding("warn", f"worker start: a fresh sandboxed Python each: {median_ms:.0f} ms median over {count} "
                           f"workers (each test that needs a new worker waits that long)",
                   [f"why not forked from a template: {starts.reason}"])


def secrets_finding(title: str, found: list[secrets.Secret]) -> Finding:
    open_to_others = secrets.exposed(found)
    if not open_to_others:
        return Finding("ok", f"{title}: closed to other users")
    return Finding("FAIL", f"{title}: readable by other users",
                   [f"{secret.path}: {secret.what}" for secret in open_to_others]
                   + [f"fix: {secrets.fix_command(open_to_others)}"])


def course_folder(course: Path | None) -> Path | None:
    """The nbgrader course to check: the one given, else this folder when it is one."""
    if course is not None:
        return course
    here = Path.cwd()
    return here if (here / "nbgrader_config.py").is_file() or (here / "gradebook.db").is_file() else None


def torch_finding() -> Finding:
    import torch

    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    threads = os.environ.get("OMP_NUM_THREADS")
    lines = [f"grading processes and workers run 1 torch thread each; this process would use "
             f"{torch.get_num_threads()} (OMP_NUM_THREADS={threads or 'unset'})"]
    if threads != "1":
        lines.append("set OMP_NUM_THREADS=1 for `nbgrader autograde` and notebooks run side by side: parallel "
                     "torch processes slow each other down several times otherwise")
    return Finding("info", f"torch {torch.__version__}: {build}, {torch.backends.cpu.get_cpu_capability()} CPU "
                           f"kernels, {os.cpu_count()} CPUs", lines)


def run_doctor(settings: Settings, course: Path | None = None) -> int:
    user = pwd.getpwuid(os.getuid()).pw_name
    where = sandbox.PACKAGES_PARENT
    kind = "a checkout" if (where / "pyproject.toml").is_file() else "installed"
    print(f"vae-assignment doctor: user {user} (uid {os.getuid()}{', root' if os.getuid() == 0 else ''}), "
          f"Python {sys.version.split()[0]} ({sys.executable})")
    print(f"grader: {where} ({kind}); cache {settings.cache_folder}")
    isolation = sandbox.detect(settings)
    findings = [isolation_finding(isolation), worker_start_finding(measure_worker_starts(settings, isolation, WORKERS_MEASURED)),
                secrets_finding("the grader's reference, hidden tests and catalogue", secrets.package_secrets(where))]
    course = course_folder(course)
    if course is not None:
        findings.append(secrets_finding(f"nbgrader course {course}", secrets.course_secrets(course)))
    findings.append(torch_finding())
    for finding in findings:
        print(f"{'[' + finding.status + ']':<7} {finding.title}")
        for line in finding.lines:
            print(f"{'':<9}{line}")
    problems = [finding for finding in findings if finding.status == "FAIL"]
    print(f"{len(problems)} problem(s)" + (": " + "; ".join(f.title.split(":")[0] for f in problems) if problems else
                                            ": ready to grade"))
    return EXIT_PROBLEM if problems else EXIT_OK
