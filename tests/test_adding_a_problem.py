"""Adding a problem is writing the problem: a course adds a toy 8th problem, `log_mean_exp(a, dim)`
worth 5 points, to a copy of the project by writing only the files DESIGN.md's "Adding a
problem" lists, runs the one command that regenerates the visible checks' values, and gets a
release, a visible check and grades that know the problem (total 105, not 100)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = "ASSIGNMENT_SPEC.md"
TOY = "log_mean_exp"
TOY_POINTS = 5

REFERENCE = '''

def log_mean_exp(a: Tensor, dim: int) -> Tensor:
    """log(mean(exp(a))) along `dim`, without overflow."""
    # logsumexp takes the maximum out before exponentiating.
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])
'''

HIDDEN_TESTS = '''"""Hidden tests of `log_mean_exp`."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.hidden_tests.strategies import tensors
from autograder.hidden_tests.support import Case, check_value, problem_of_test_file
from solutions import vae as reference

PROBLEM = problem_of_test_file(__file__)
NAMES = ("a",)

VISIBLE_CASES = (
    Case("dim = 0", {"a": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]}, {"dim": 0}),
    Case("dim = 1, values around 1e4", {"a": [[10000.0, 10001.0, 9999.5], [-3.0, -4.0, -5.5]]}, {"dim": 1}),
)


def check(student, a, dim, *, checked):
    return check_value(student, PROBLEM, NAMES, (a,), {"dim": dim}, checked=checked, reference=reference.log_mean_exp)


@pytest.mark.points(3)
@given(data=st.data())
def test_values(student, data):
    """log of the mean of exp(a) along either axis of a matrix."""
    shape = data.draw(st.tuples(st.integers(1, 4), st.integers(2, 5)))
    dim = data.draw(st.integers(0, 1))
    check(student, data.draw(tensors(shape)), dim, checked=f"log_mean_exp(a, dim={dim})")


@pytest.mark.points(2)
def test_stable_for_large_values(student):
    """Finite and accurate for values around 1e4."""
    a = torch.tensor([[1e4, 1e4 + 1.0, 1e4 - 2.0], [-1e4, -1e4 - 1.0, -1e4 + 0.5]], dtype=torch.float64)
    check(student, a, 1, checked="log_mean_exp(a, dim=1) of values around +-1e4")
'''

NOTEBOOK_SECTION = f'''<!-- markdown -->
## Problem 8 ({TOY_POINTS} points): the log-mean-exp

`log_mean_exp(a, dim)` returns $\\log \\frac1n \\sum_i e^{{a_i}}$ over the `n` entries along `dim`,
computed without overflow for entries around $10^4$.

<!-- solution: {TOY} -->

<!-- check: {TOY} -->

'''

CATALOGUE = f'''# ---------------------------------------------------------------------------- {TOY}
catalogued(
    _mistake(
        "lme_missing_log_n", "{TOY}",
        "logsumexp without the -log n: the log of the sum, not of the mean",
        """
            return torch.logsumexp(a, dim=dim)
        """,
        hint="It looks like the -log n is missing: the mean of n exponentials is their sum divided by n.",
    ),
    _mistake(
        "lme_naive", "{TOY}",
        "log(mean(exp(a))): overflows to inf for entries around 1e4",
        """
            return torch.log(torch.exp(a).mean(dim=dim))
        """,
    ),
)


'''

SPEC_SECTION = f'''

## Problem 8: `log_mean_exp` ({TOY_POINTS} points)

`log_mean_exp(a: Tensor, dim: int) -> Tensor`: $\\log \\frac1n \\sum_i e^{{a_i}}$ along `dim`, the
result with `dim` removed, finite for entries around $\\pm 10^4$.
'''


def _insert_before(path: Path, marker: str, text: str) -> None:
    source = path.read_text()
    assert source.count(marker) == 1, f"{path}: {marker!r}"
    path.write_text(source.replace(marker, text + marker))


def add_the_toy_problem(project: Path, shared: Path) -> list[Path]:
    """What a course writes, and nothing else: the paths written."""
    spec = shared / SPEC
    spec.write_text(spec.read_text() + SPEC_SECTION)
    contract = project / "assignment" / "contract.py"  # the toy comes last, as in the notebook
    _insert_before(contract, "\n)\n\nPROBLEMS", f'\n    Problem("{TOY}", {TOY_POINTS}, "lme"),')
    reference = project / "solutions" / "vae.py"
    reference.write_text(reference.read_text() + REFERENCE)
    hidden = project / "autograder" / "hidden_tests" / f"test_{TOY}.py"
    hidden.write_text(HIDDEN_TESTS)
    notebook = project / "assignment" / "notebook.md"
    text = notebook.read_text()
    question = text.index("**Question 1")
    section = text.rindex("<!-- markdown -->", 0, question)  # the questions' section starts there
    notebook.write_text(text[:section] + NOTEBOOK_SECTION + text[section:])
    catalogue = project / "autograder" / "catalogue.py"
    _insert_before(catalogue, "# ------------------------------------------------- the catalogue (entries go above this line)",
                   CATALOGUE)
    return [spec, contract, reference, hidden, notebook, catalogue]


def copy_project(to: Path) -> Path:
    """The project's tracked files (as a fresh clone has them, with this checkout's edits)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)
    return to


def run(project: Path, *command: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """`python *command` with the copy's packages first on the path, as a course runs it."""
    env = {**os.environ, "PYTHONPATH": str(project), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *command], cwd=cwd or project, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("adding-a-problem")
    project, shared = copy_project(base / "project"), base / "shared"
    shared.mkdir()
    spec = ROOT.parent / "shared" / SPEC
    (shared / SPEC).write_text(spec.read_text() if spec.is_file() else "# The assignment contract\n")
    before = {path: path.read_bytes() for path in project.rglob("*") if path.is_file()}
    written = add_the_toy_problem(project, shared)
    print(run(project, "-m", "autograder.check_values"))  # the one command: regenerates check_values.json
    changed = sorted(str(path.relative_to(base)) for path in project.rglob("*")
                     if path.is_file() and before.get(path) != path.read_bytes() and "__pycache__" not in path.parts)
    assert "autograder" in run(project, "-c", "import autograder; print(autograder.__file__)")
    assert run(project, "-c", "import autograder; print(autograder.__file__)").startswith(str(project))
    return {"base": base, "project": project, "written": written, "changed": changed}


@pytest.mark.slow
def test_the_course_writes_the_problem_and_nothing_else(course):
    written = sorted(str(path.relative_to(course["base"])) for path in course["written"])
    print(f"\nfiles written by hand: {len(written)}: {written}")
    assert len(written) == 6
    generated = "project/assignment/public/check_values.json"
    assert course["changed"] == sorted([*(w for w in written if w.startswith("project/")), generated])


@pytest.mark.slow
def test_the_release_the_visible_check_and_the_grades_know_the_toy_problem(course):
    project, base = course["project"], course["base"]
    release = base / "release"
    run(project, "-m", "autograder.cli", "release", "--out", str(release))
    nb = nbformat.read(release / "vae" / "vae.ipynb", as_version=4)
    sources = [cell.source for cell in nb.cells]
    assert f"check_{TOY}({TOY})" in sources
    assert any(f"check_{TOY}," in source and "from vae_checks import" in source for source in sources)
    assert any(f"| `{TOY}` | {TOY_POINTS} |" in source and "105 points in all" in source for source in sources)

    # The released visible check, as the notebook runs it: the reference passes, the mistake is named.
    checks = "\n".join([
        "import math, torch", "from torch import Tensor", f"from vae_checks import CheckFailed, check_{TOY}",
        REFERENCE, f"check_{TOY}(log_mean_exp)",
        "try:", f"    check_{TOY}(lambda a, dim: torch.logsumexp(a, dim=dim))",
        "except CheckFailed as failure:", "    print(failure)",
    ])
    out = run(project, "-c", checks, cwd=release / "vae")
    assert f"{TOY}: " in out and "checks passed." in out
    assert "Likely mistake: It looks like the -log n is missing" in out

    # Grading: the reference full marks, the release's stubs 0, the toy mistake loses points in its problem only.
    submissions = base / "submissions"
    submissions.mkdir()
    shutil.copy(project / "solutions" / "vae.py", submissions / "reference.py")
    shutil.copy(release / "vae" / "vae.ipynb", submissions / "stubs.ipynb")
    run(project, "-c", "import sys; from pathlib import Path; from autograder import catalogue; "
        "catalogue.write_submissions(Path(sys.argv[1]), [v for v in catalogue.MISTAKES if v.name == 'lme_missing_log_n'])",
        str(submissions))
    grades = base / "grades.json"
    run(project, "-m", "autograder.cli", "grade", str(submissions), "--visible-checks", "--json", str(grades),
        "--db", str(base / "grades.sqlite"), "--jobs", "2")
    records = {r["id"]: r for r in json.loads(grades.read_text())["submissions"]}
    assert records["reference"]["score"] == records["reference"]["max_score"] == 105
    assert records["stubs"]["score"] == 0
    mistake = records["lme_missing_log_n"]
    lost = {p: v["max_score"] - v["score"] for p, v in mistake["problems"].items() if v["score"] < v["max_score"]}
    assert list(lost) == [TOY]
    assert "lme_missing_log_n" in {t["mistake"] for t in mistake["problems"][TOY]["tests"]}
    visible = {c["name"]: c for c in mistake["visible_checks"]}
    assert visible[f"check_{TOY}"]["passed"] is False and "-log n is missing" in visible[f"check_{TOY}"]["output"]
    assert all(c["passed"] for c in records["reference"]["visible_checks"])
