"""The Gradescope bundle: what it holds, setup.sh, and run_autograder against a relocated root.

Gradescope unzips the bundle into /autograder/source and copies run_autograder to
/autograder/run_autograder; here the root is a temporary folder (AUTOGRADER_ROOT) and the
`vae-assignment` command comes from a fresh environment into which the bundled source was
installed as setup.sh installs it (not editable; offline: the dependencies are this
environment's, linked in by benchmarks/installed.py), its bin first on PATH.
Every results.json is validated against gradescope_results.schema.json, written from
Gradescope's published specification.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from assignment.contract import CONTRACT
from autograder.cli import main
from autograder.collect import UsageError, find_submissions
from autograder.gradescope import gradescope_results
from autograder.gradescope_bundle import write_bundle
from autograder.gradescope_run import choose
from autograder.grading import grade
from autograder.isolation.limits import Limits
from autograder.pipeline import EXIT_OK, EXIT_USAGE
from autograder.settings import Settings
from autograder.worker_client import Student
from autograder.catalogue import MISTAKES, build_source
from benchmarks import installed

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
SCHEMA = json.loads((TESTS / "gradescope_results.schema.json").read_text())
VISIBLE_CHECKS = [problem.check_function for problem in CONTRACT]  # one per problem, in the notebook's order


def validate(document: dict) -> dict:
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    return document


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    assert main(["gradescope-bundle", "--out", str(out)]) == EXIT_OK
    return out


@pytest.fixture(scope="module")
def bundled_wheel(source, tmp_path_factory) -> Path:
    """What setup.sh installs: a wheel built from the bundle alone (offline, no dependencies)."""
    out = tmp_path_factory.mktemp("bundled-wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(out), str(source / "vae-assignment")],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def bundle_bin(bundled_wheel, tmp_path_factory) -> Path:
    """bin/ of a fresh environment with the bundled project installed (setup.sh's venv)."""
    return installed.make_environment(tmp_path_factory.mktemp("bundle-venv") / "venv", bundled_wheel)


@pytest.fixture(scope="module")
def source(bundle, tmp_path_factory) -> Path:
    """The bundle unzipped, as in /autograder/source (zipfile drops the modes: put them back)."""
    folder = tmp_path_factory.mktemp("source")
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
        for info in archive.infolist():
            (folder / info.filename).chmod((info.external_attr >> 16) & 0o777)
    return folder


def run_autograder(source: Path, root: Path, files: dict[str, str], path: str | None = None) -> tuple[dict, str]:
    """Lay out AUTOGRADER_ROOT=root as Gradescope does, run run_autograder there with `path`
    as PATH (by default, this environment's bin first); (results.json, stdout)."""
    (root / "submission").mkdir(parents=True)
    for name, text in files.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_text(text)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    path = path or f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run([str(root / "run_autograder")], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "AUTOGRADER_ROOT": str(root), "PATH": path})
    assert done.returncode == 0, done.stdout + done.stderr
    return validate(json.loads((root / "results" / "results.json").read_text())), done.stdout


def entries(document: dict, visibility: str) -> list[dict]:
    return [test for test in document["tests"] if test["visibility"] == visibility]


# ------------------------------------------------------------------------------ the bundle
def test_the_bundle_holds_the_scripts_at_its_root_and_the_grader_with_its_secrets(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as archive:
        modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in archive.infolist()}
    assert modes["setup.sh"] == modes["run_autograder"] == 0o755
    names = set(modes)
    hidden_tests = {f"vae-assignment/{p.relative_to(PROJECT).as_posix()}"
                    for p in (PROJECT / "autograder" / "hidden_tests").glob("*.py")}
    # The hidden tests and the reference are in the bundle (tests/test_release.py checks that
    # the student release has neither).
    assert hidden_tests <= names and "vae-assignment/solutions/vae.py" in names
    assert {"vae-assignment/pyproject.toml", "vae-assignment/README.md", "constraints.txt",
            "vae-assignment/autograder/untrusted/worker.py", "vae-assignment/assignment/public/digits.npz"} <= names
    assert not [n for n in names if n.startswith("vae-assignment/tests/") or "__pycache__" in n
                or ".git" in n or ".venv" in n or n.endswith(".pyc")]
    again = tmp_path / "again.zip"
    assert main(["gradescope-bundle", "--out", str(again)]) == EXIT_OK
    assert again.read_bytes() == bundle.read_bytes()  # the same project gives the same bundle


def test_setup_sh_is_valid_bash_and_pins_this_torch(source):
    setup = source / "setup.sh"
    assert subprocess.run(["bash", "-n", str(setup)], capture_output=True).returncode == 0
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", str(setup)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout
    text = setup.read_text()
    torch_version = importlib.metadata.version("torch").split("+")[0]
    assert f'"torch=={torch_version}" --index-url https://download.pytorch.org/whl/cpu' in text
    assert "bubblewrap" in text and "python3.11 -m venv" in text and "/usr/local/bin/vae-assignment" in text
    assert f"torch=={torch_version}\n" in (source / "constraints.txt").read_text()
    # closed to other users: the hidden tests, the reference, and the catalogue's correct variants
    (chmod,) = [line for line in text.splitlines() if line.startswith("chmod -R o=")]
    assert all(f'"$SITE/{path}"' in chmod.split() for path in ("autograder/hidden_tests", "solutions",
                                                              "autograder/catalogue.py"))


def test_the_bundled_source_builds_the_package_with_its_hidden_tests(bundled_wheel, wheel):
    """The wheel setup.sh builds from the bundle holds what the checkout's wheel holds."""
    names = set(zipfile.ZipFile(bundled_wheel).namelist())
    assert {"autograder/hidden_tests/test_gaussian_kl.py", "solutions/vae.py", "autograder/untrusted/worker.py",
            "autograder/isolation/sandbox.py", "assignment/public/digits.npz"} <= names
    assert names == set(zipfile.ZipFile(wheel).namelist())


def test_a_folder_is_not_a_bundle_name_and_an_installed_copy_is_no_source(tmp_path, capsys):
    assert main(["gradescope-bundle", "--out", str(tmp_path)]) == EXIT_USAGE
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(UsageError, match="no pyproject.toml"):
        write_bundle(tmp_path / "autograder.zip", root=tmp_path)


def test_the_visible_checks_replies_are_untrusted(monkeypatch, isolation, worker_start):
    """A worker that answers anything but (bool, text) fails every check, saying so."""
    student = Student([("vae.py", "")], Limits(), isolation, worker_start)
    monkeypatch.setattr(student, "request", lambda *args, **kwargs: {"passed": "yes", "message": "all good"})
    checks = student.visible_checks()
    assert [c["name"] for c in checks] == VISIBLE_CHECKS
    assert not any(c["passed"] for c in checks) and all("malformed reply" in c["output"] for c in checks)


# ----------------------------------------------------------------- run_autograder, no grading
def test_the_notebook_is_chosen_and_vae_named_files_break_ties():
    paths = [Path(n) for n in ("a/vae.ipynb", "b.ipynb", "helper.py")]
    assert choose(paths) == Path("a/vae.ipynb")
    assert choose([Path("mine.ipynb"), Path("vae.py")]) == Path("mine.ipynb")
    assert choose([Path("x.py"), Path("vae.py")]) == Path("vae.py")
    assert choose([Path("a.ipynb"), Path("b.ipynb"), Path("vae.py")]) is None  # ambiguous notebooks
    assert choose([]) is None


@pytest.mark.parametrize("files, found", [
    ({}, "no files at all"),
    ({"report.pdf": "%PDF"}, "no notebook or .py file (uploaded: report.pdf)"),
    ({"a.ipynb": "{}", "b.ipynb": "{}", ".ipynb_checkpoints/a-checkpoint.ipynb": "{}"},
     "several candidates: a.ipynb, b.ipynb"),
])
def test_no_single_candidate_gives_zero_and_says_what_was_found(source, tmp_path, files, found):
    document, _ = run_autograder(source, tmp_path / "autograder", files)
    assert document["score"] == 0 and len(document["tests"]) == 1
    [entry] = document["tests"]
    assert entry["status"] == "failed" and entry["visibility"] == "visible"
    assert found in entry["output"] and "exactly one Jupyter notebook (vae.ipynb)" in entry["output"]


def test_a_failing_grader_still_leaves_a_results_json(source, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vae-assignment").write_text("#!/bin/sh\necho 'vae-assignment grade failed: OSError: disk full' >&2\n"
                                         "exit 1\n")
    (fake / "vae-assignment").chmod(0o755)
    path = f"{fake}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    document, stdout = run_autograder(source, tmp_path / "autograder", {"vae.py": "x = 1\n"}, path)
    assert document["score"] == 0 and document["tests"][0]["status"] == "failed"
    assert "autograder failed" in document["output"] and "disk full (exit status 1)" in document["output"]
    assert "disk full" in stdout  # the instructor sees what the grader said


def test_an_unreadable_submission_is_shown_at_once_and_scores_zero(tmp_path):
    (tmp_path / "alice.py").write_text("def gaussian_kl(:\n")
    document = validate(gradescope_results(grade(find_submissions([tmp_path / "alice.py"])[0], Settings.from_environment()), 1.0))
    assert document["score"] == 0 and "SyntaxError" in document["output"]
    [shown] = entries(document, "visible")
    assert shown["status"] == "failed" and "SyntaxError" in shown["output"]
    assert sum(t["max_score"] for t in entries(document, "after_published")) == 100


# ------------------------------------------------------------------ run_autograder, grading
@pytest.fixture(scope="module")
def graded(source, bundle_bin, tmp_path_factory) -> dict[str, dict]:
    """results.json of the reference, a catalogued mistake and a hostile submission, graded at
    the same time (each run_autograder in its own root) by the grader setup.sh installs."""
    mistake = next(v for v in MISTAKES if v.name == "kl_missing_half")
    submissions = {
        "reference": {"vae.py": (PROJECT / "solutions" / "vae.py").read_text()},
        "mistake": {"vae.py": build_source(mistake)},
        "hostile": {"vae.py": (TESTS / "redteam" / "crash.py").read_text()},  # os._exit, segfault, sys.exit
    }
    base = tmp_path_factory.mktemp("graded")
    with ThreadPoolExecutor(len(submissions)) as pool:
        path = f"{bundle_bin}{os.pathsep}{os.environ['PATH']}"
        futures = {name: pool.submit(run_autograder, source, base / name, files, path)
                   for name, files in submissions.items()}
        return {name: future.result()[0] for name, future in futures.items()}


def check_layout(document: dict) -> None:
    """Visible checks first (no points, shown at once), then every hidden test (after publishing)."""
    assert document["visibility"] == "after_published" and document["stdout_visibility"] == "hidden"
    visible, hidden = entries(document, "visible"), entries(document, "after_published")
    assert visible + hidden == document["tests"]
    assert [t["name"].split()[2] for t in visible] == VISIBLE_CHECKS
    assert all(t["score"] == t["max_score"] == 0 for t in visible)
    assert sum(t["max_score"] for t in hidden) == 100 and document["score"] == sum(t["score"] for t in hidden)
    assert isinstance(document["execution_time"], int) and document["execution_time"] > 0
    assert not re.search(r"\d\s*/\s*100", document["output"])  # shown at once: no score in it


@pytest.mark.slow
def test_the_reference_scores_100_and_passes_every_visible_check(graded):
    document = graded["reference"]
    check_layout(document)
    assert document["score"] == 100
    assert all(t["status"] == "passed" for t in document["tests"])
    assert entries(document, "visible")[0]["output"].startswith("gaussian_kl: ") and "checks passed" in \
        entries(document, "visible")[0]["output"]


@pytest.mark.slow
def test_a_mistake_loses_points_in_its_problem_only_and_is_named(graded):
    document = graded["mistake"]
    check_layout(document)
    lost = [t for t in entries(document, "after_published") if t["score"] < t["max_score"]]
    assert lost and all(t["name"].startswith("gaussian_kl: ") and t["status"] == "failed" for t in lost)
    assert document["score"] == 100 - sum(t["max_score"] for t in lost)
    assert any("1/2 in front of the KL is missing" in t["output"] for t in lost)
    visible = {t["name"].split()[2]: t for t in entries(document, "visible")}
    assert "1/2 in front of the KL is missing" in visible["check_gaussian_kl"]["output"]
    # As in the notebook and the hidden tests, check_elbo carries the student's wrong KL forward.
    assert {name for name, t in visible.items() if t["status"] == "failed"} == {"check_gaussian_kl"}
    assert "fix Problem 1 (gaussian_kl) first" in visible["check_elbo"]["output"]


@pytest.mark.slow
def test_a_hostile_submission_is_graded_and_keeps_its_honest_points(graded):
    document = graded["hostile"]
    check_layout(document)
    hidden = entries(document, "after_published")
    honest = [t for t in hidden if t["name"].startswith("bernoulli_log_likelihood: ")]
    assert all(t["status"] == "passed" for t in honest) and document["score"] == sum(t["score"] for t in honest) == 10
    exited = [t for t in hidden if t["name"].startswith("gaussian_log_density: ")]
    assert all("exited" in t["output"] for t in exited)
    visible = {t["name"].split()[2]: t for t in entries(document, "visible")}
    assert visible["check_bernoulli_log_likelihood"]["status"] == "passed"
    assert visible["check_vae"]["status"] == "failed" and "`VAE` is not defined" in visible["check_vae"]["output"]
    assert visible["check_gaussian_log_density"]["status"] == "failed"
