"""The package as users get it: the wheel built from this checkout holds every package and
data file of the source tree, and installed (not editable) outside the checkout it grades,
run by root and by an unprivileged user (with forked sandboxed workers, the red-team suite
green); `vae-assignment doctor` finds what other users can read, and its fix closes it.

Environments come from benchmarks/installed.py (the dependencies of this environment linked
in, the package from the wheel, nothing downloaded); the unprivileged user is made with
useradd where missing, which takes root: elsewhere these tests skip (and fail in CI, where
.ci/run sets VAE_REQUIRE_SANDBOX=1).
"""
from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from autograder import doctor
from autograder.catalogue import MISTAKES, build_source
from autograder.cli import main
from autograder.gradescope_bundle import top_level_packages
from autograder.isolation import sandbox
from autograder.settings import Settings
from benchmarks import installed
from conftest import PROJECT, stub_source

SANDBOXED = sandbox.detect(Settings.from_environment()).sandboxed
MISTAKE = next(m for m in MISTAKES if m.name == "kl_missing_half")


def source_packages() -> dict[str, Path]:
    """Every package of the source tree, by dotted name: a folder with __init__.py, as are all
    above it, under a top-level package pyproject.toml's finder does not exclude."""
    initialised = {path.parent for path in installed.source_files() if path.name == "__init__.py"}
    tops = set(top_level_packages(PROJECT))
    packages = {}
    for folder in initialised:
        parts = folder.relative_to(PROJECT).parts
        if parts[0] in tops and all(PROJECT.joinpath(*parts[:n]) in initialised for n in range(1, len(parts))):
            packages[".".join(parts)] = folder
    return packages


def test_the_wheel_holds_every_package_and_data_file_of_the_source_tree(wheel):
    packages = source_packages()
    assert {"autograder", "autograder.isolation", "autograder.hidden_tests", "solutions"} <= set(packages)
    expected = {path.relative_to(PROJECT).as_posix() for path in installed.source_files()
                if path.parent in packages.values()}
    names = {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}
    assert sorted(expected - names) == []  # every module and data file (notebook.md, digits.npz, ...)
    assert sorted(names - expected) == []  # and nothing else (no tests, no benchmarks)


def hidden_test_names() -> set[str]:
    return {f"{node.name}" for path in (PROJECT / "autograder" / "hidden_tests").glob("test_*.py")
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@pytest.fixture(scope="module")
def class_folder():
    """The reference, the stubs and a catalogued mistake, where every user can read them."""
    folder = installed.shared_temporary_folder("vae-installed-class-")
    for name, text in {"reference": (PROJECT / "solutions" / "vae.py").read_text(), "stubs": stub_source(),
                       MISTAKE.name: build_source(MISTAKE)}.items():
        (folder / f"{name}.py").write_text(text)
        (folder / f"{name}.py").chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def clean_environment(bin_folder: Path) -> dict[str, str]:
    """This process's environment without anything that could import the checkout."""
    return {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")},
            "PATH": f"{bin_folder}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


def grade_command(bin_folder: Path, class_folder: Path, work: Path) -> list[str]:
    return [str(bin_folder / "vae-assignment"), "grade", str(class_folder), "--json", str(work / "grades.json"),
            "--db", str(work / "grades.sqlite"), "--jobs", "2"]


def check_grades(grades: dict) -> None:
    """Reference 100 (so the hidden tests and the data were found), stubs 0, the mistake loses
    points in its problem only, and is named."""
    records = {record["id"]: record for record in grades["submissions"]}
    reference, stubs, mistake = records["reference"], records["stubs"], records[MISTAKE.name]
    assert reference["score"] == 100 and stubs["score"] == 0
    assert {test["name"] for problem in reference["problems"].values() for test in problem["tests"]} == \
        hidden_test_names()
    assert isinstance(reference["model"]["heldout_elbo"], float)  # trained on the bundled digits
    lost = {name for name, problem in mistake["problems"].items() if problem["score"] < problem["max_score"]}
    assert lost == {MISTAKE.problem}
    assert any(test["mistake"] == MISTAKE.hint.code for test in mistake["problems"][MISTAKE.problem]["tests"])


def check_workers(stdout: str, user_namespace: bool) -> None:
    """The summary says bubblewrap, and that every worker was forked from a template. (How
    long one takes is the doctor's to measure: a submission's share here includes the
    template's own start, once per grading process.)"""
    if SANDBOXED:
        expected = "uid 65534 in a user namespace" if user_namespace else "real uid 65534 (setpriv)"
        assert f"isolation: bubblewrap ({expected};" in stdout
        assert re.search(r"worker start \d+ ms \(median, forked from a template\)", stdout), stdout


@pytest.fixture(scope="module")
def root_grades(installed_bin, class_folder, tmp_path_factory) -> tuple[str, str]:
    """(grades JSON, stdout) of root grading the class with the installed wheel, outside the checkout."""
    work = tmp_path_factory.mktemp("root-grading")
    done = subprocess.run(grade_command(installed_bin, class_folder, work), cwd=work, capture_output=True, text=True,
                          env=clean_environment(installed_bin), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return (work / "grades.json").read_text(), done.stdout


@pytest.mark.slow
def test_the_installed_wheel_imports_only_itself_outside_the_checkout(installed_bin, tmp_path):
    probe = ("import json, sys, autograder.cli, solutions.vae, assignment.public.vae_checks as c; "
             "print(json.dumps([autograder.cli.__file__, solutions.vae.__file__, c.__file__, sys.path]))")
    done = subprocess.run([str(installed_bin / "python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env=clean_environment(installed_bin), timeout=120)
    assert done.returncode == 0, done.stderr
    *modules, path = json.loads(done.stdout)
    assert all(Path(module).is_relative_to(installed_bin.parent) for module in modules)
    assert not [entry for entry in path if entry and Path(entry).resolve().is_relative_to(PROJECT)]


@pytest.mark.slow
def test_root_grades_with_the_installed_wheel_outside_the_checkout(root_grades):
    grades, stdout = root_grades
    check_grades(json.loads(grades))
    # A root grader's template forks workers, though this environment lies under /tmp.
    check_workers(stdout, user_namespace=False)


# ------------------------------------------------------------------------- an unprivileged user
@pytest.mark.slow
def test_an_unprivileged_user_grades_the_same_with_forked_sandboxed_workers(unprivileged, class_folder, root_grades):
    work = unprivileged.folder_of_theirs("grading")
    done = unprivileged.run(grade_command(unprivileged.bin, class_folder, work), cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / "grades.json").read_text() == root_grades[0]  # the same JSON, byte for byte
    check_workers(done.stdout, user_namespace=True)


@pytest.mark.slow
def test_the_red_team_suite_passes_as_an_unprivileged_user(unprivileged):
    """tests/test_redteam.py run by that user against the installed wheel: no unearned points,
    nothing read or written outside the worker, nothing left running, with forked workers."""
    if not SANDBOXED:
        pytest.skip("the red-team suite as another user is about the sandbox, and bubblewrap is not usable here")
    copy = unprivileged.folder_of_theirs("redteam")
    for name in ("test_redteam.py", "conftest.py"):  # conftest: the fixtures it shares with the other tests
        shutil.copy(PROJECT / "tests" / name, copy)
    shutil.copytree(PROJECT / "tests" / "redteam", copy / "redteam")
    (copy / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: takes more than a few seconds\n")
    subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
    done = unprivileged.run([str(unprivileged.bin / "python"), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             "test_redteam.py"], cwd=copy, VAE_REQUIRE_SANDBOX="1")
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0 and re.fullmatch(r"=*\s*\d+ passed in .*", summary), done.stdout[-4000:]


def doctor_fixes(stdout: str) -> list[list[str]]:
    return [shlex.split(line.split("fix: ", 1)[1]) for line in stdout.splitlines() if "fix: " in line]


def make_course(folder: Path) -> None:
    """An nbgrader course as nbgrader leaves it: a gradebook and exports readable by all (644)."""
    (folder / "source" / "vae").mkdir(parents=True)
    for relative in ("nbgrader_config.py", "gradebook.db", "grades.csv", "source/vae/vae.ipynb"):
        (folder / relative).write_text("x")
        (folder / relative).chmod(0o644)


@pytest.mark.slow
def test_doctor_as_an_unprivileged_user_finds_what_others_can_read_and_its_fix_closes_it(unprivileged):
    assert Path(unprivileged.user.pw_dir).stat().st_mode & 0o777 == 0o755  # a home as on many servers
    # Their own nbgrader course, released by them with the installed wheel, and an export.
    work = unprivileged.folder_of_theirs("instructor")
    released = unprivileged.run([str(unprivileged.bin / "vae-assignment"), "release", "--out", "release"], cwd=work)
    assert released.returncode == 0, released.stdout + released.stderr
    course = work / "release" / "course"
    assert unprivileged.run(["sh", "-c", "echo student,score > grades.csv"], cwd=course).returncode == 0
    doctor = [str(unprivileged.bin / "vae-assignment"), "doctor"]
    first = unprivileged.run(doctor, cwd=course)  # the course: the current folder
    assert first.returncode == 1, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    if SANDBOXED:
        assert any(line.startswith("[ok]    isolation: bubblewrap (uid 65534 in a user namespace") for line in lines)
        # [ok]: a median start within doctor.SLOW_START_SECONDS (0.5 s); a fresh Python each takes 1-3 s
        assert any(line.startswith("[ok]    worker start: forked from a template: ") for line in lines)
    assert "[FAIL]  the grader's reference, hidden tests and catalogue: readable by other users" in lines
    assert f"[FAIL]  nbgrader course {course}: readable by other users" in lines
    fixes = doctor_fixes(first.stdout)
    assert [fix[:2] for fix in fixes] == [["chmod", "o="], ["chmod", "o="]]  # theirs: no sudo
    assert {str(course / name) for name in ("source", "gradebook.db", "grades.csv")} <= set(fixes[1])
    for fix in fixes:
        assert unprivileged.run(fix, cwd=course).returncode == 0
    second = unprivileged.run(doctor, cwd=course)
    assert "readable by other users" not in second.stdout
    assert second.returncode == (0 if SANDBOXED else 1), second.stdout
    # Still theirs to grade with: the reference is closed to others, not to its owner.
    assert unprivileged.run([str(unprivileged.bin / "python"), "-c", "import solutions.vae"], cwd=course).returncode == 0


@pytest.mark.slow
def test_doctor_as_root_checks_the_course_given(installed_bin, tmp_path):
    course = installed.shared_temporary_folder("vae-doctor-course-")
    try:
        make_course(course)
        doctor = [str(installed_bin / "vae-assignment"), "doctor", "--course", str(course)]
        first = subprocess.run(doctor, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                               env=clean_environment(installed_bin))
        assert first.returncode == 1 and f"[FAIL]  nbgrader course {course}: readable by other users" in first.stdout
        # the installed copy lies in pytest's folder, which only root can enter
        assert "[ok]    the grader's reference, hidden tests and catalogue: closed to other users" in first.stdout
        for fix in doctor_fixes(first.stdout):
            subprocess.run(fix, check=True)
        second = subprocess.run(doctor, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                                env=clean_environment(installed_bin))
        assert second.returncode == (0 if SANDBOXED else 1), second.stdout
        if SANDBOXED:
            assert "[ok]    worker start: forked from a template: " in second.stdout
    finally:
        shutil.rmtree(course, ignore_errors=True)


def test_the_doctor_fails_where_student_code_would_run_unsandboxed(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("VAE_ISOLATION", "process")
    monkeypatch.setattr(doctor, "WORKERS_MEASURED", 1)  # unsandboxed workers start the classic way: slow
    monkeypatch.chdir(tmp_path)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL]  isolation: process (no OS sandbox: VAE_ISOLATION=process)" in out
    assert "worker start: a fresh sandboxed Python each" in out and "no bubblewrap sandbox" in out
