"""nbgrader end to end: `nbgrader autograde` gives the per-problem scores of `vae-assignment grade`,
graded ahead in parallel, and nothing the student's notebook does changes them.

A course directory from `build_release` gets, as students of ONE `nbgrader autograde` run (with
the notebooks' own cells run in the sandbox, `execute_notebook`): the reference, the stubs, a
catalogued mistake that also edits a locked test cell, a correct variant written with
torch.distributions that deleted a check cell, four hostile notebooks (stubs plus one cell): a
fake grading module in `sys.modules`, a monkeypatched grader, the instructor's source notebook
copied over the graded file, and one that snoops for the reference, the hidden tests, `source/`,
the gradebook and the home folder and writes outside its folder; and the red team of
tests/test_redteam_nbgrader.py: markup for the instructor's browser, `BEGIN HIDDEN TESTS` in an
answer, a notebook that is a link to the source notebook, notes that link to the gradebook. The
standalone grader grades the same files in this process meanwhile; then `nbgrader
generate_feedback`, `nbgrader export` and the per-problem export (autograder/nbgrader_export.py).

Then the course's default run (the notebooks' cells not run) twice more on a copy of a few of
those students: one notebook at a time in nbgrader's process (`ahead = False`, nbgrader's serial
way), and graded ahead but killed halfway and run again: the same gradebook, autograded notebooks
and feedback, and the second run takes what the first one stored.
"""
from __future__ import annotations

import csv
import html
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from assignment.notebook import (
    ASSIGNMENT, BEGIN_SOLUTION, END_SOLUTION, SOURCE_NOTEBOOK_NAME, build_notebook,
)
from assignment.contract import PROBLEM_POINTS, TOTAL_POINTS
from assignment.release import COURSE_ID, build_release
from autograder import mistakes
from autograder.catalogue import ALL
from autograder.collect import Submission
from autograder.grading import grade
from autograder.handed_in import cell_by_id, reference_notebook
from autograder.hidden_pytest import HIDDEN_TESTS
from autograder.isolation import sandbox
from autograder.settings import Settings
from test_redteam_nbgrader import (
    MARK as HOSTILE_MARK, active_markup, course_config, formgrader_view, hidden_marker_notebook,
    hostile_html_notebook,
)

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
VARIANTS = {variant.name: variant for variant in ALL}
MISTAKES = ("kl_missing_half",)  # partial credit: 1 of gaussian_kl's 20 points
CORRECT = "correct_torch_distributions"
TAMPERED = "kl_missing_half"  # also replaces its locked check cell by one that passes
TAMPERED_CELL = "check_gaussian_kl"
DELETED_CELL = "check_VAE"  # the correct variant hands in its notebook without it
MARK = f"pwned-{uuid.uuid4().hex[:8]}"  # the name of every file the snooping notebook writes

# Stubs plus one cell each: what a student who wants unearned points adds. Each one fooled
# the design where the check cells scored the notebook in the student's kernel.
FULL_MARKS = f"full_marks = {dict(PROBLEM_POINTS)!r}"
FAKE_MODULE = FULL_MARKS + """
import sys, types
fake = types.ModuleType("autograder.nbgrader_cell")
fake.problem_score = lambda problem, notebook=None: full_marks[problem]
fake.nonfatal = lambda check: (lambda *args, **kwargs: None)
sys.modules["autograder.nbgrader_cell"] = sys.modules["autograder.nbgrader_autograde"] = fake
"""
MONKEYPATCH = FULL_MARKS + """
import importlib
for module, name, forged in [("autograder.nbgrader_cell", "problem_score", lambda p, notebook=None: full_marks[p]),
                             ("autograder.grading", "grade", lambda *args, **kwargs: {"score": 100}),
                             ("autograder.nbgrader_autograde", "set_graded_outputs", lambda *args: None)]:
    try:
        setattr(importlib.import_module(module), name, forged)
        print("patched", module)
    except Exception as error:
        print("could not patch", module, type(error).__name__)
"""
SWAP = """
import os, shutil
from pathlib import Path
mounts = [line.split()[4] for line in open("/proc/self/mountinfo")] if os.path.exists("/proc/self/mountinfo") else []
for folder in {Path.cwd(), *map(Path, mounts)}:
    source = folder / ".." / ".." / ".." / "source" / "vae" / "vae.ipynb"
    try:
        shutil.copyfile(source, folder / "vae.ipynb")
        print("swapped", folder)
    except Exception as error:
        print("could not swap:", type(error).__name__)
"""


def snoop_source(course: Path) -> str:
    """A cell that prints every secret it can read and writes a file everywhere it can."""
    targets = [PROJECT / "solutions" / "vae.py", HIDDEN_TESTS / "test_gaussian_kl.py",
               course / "source" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME, course / "gradebook.db",
               course / "nbgrader_config.py"]
    places = [course, Path.home(), PROJECT, Path("/tmp"), course / "submitted"]
    return f"""
import os
from pathlib import Path
for target in {[str(t) for t in targets]!r}:
    try:
        print("READ", target, open(target, errors="replace").read()[:3000])
    except Exception as error:
        print("cannot read", target, type(error).__name__)
for name in ["~", "/root", "/home", "/work"]:
    try:
        print("LIST", name, os.listdir(os.path.expanduser(name)))
    except Exception as error:
        print("cannot list", name, type(error).__name__)
for folder in {[str(p) for p in places]!r} + [str(Path.cwd().parent), str(Path.cwd().parent.parent)]:
    try:
        Path(folder, "{MARK}").write_text("written from the student's kernel")
        print("WROTE", folder)
    except Exception as error:
        print("cannot write", folder, type(error).__name__)
"""


HOSTILE = {"fake_module": FAKE_MODULE, "monkeypatch": MONKEYPATCH, "swap_notebook": SWAP}
RED_TEAM = ("html_hostile", "hidden_marker")  # graded; test_redteam_nbgrader.py's notebooks
LINKED = ("linked_notebook", "linked_notes")  # refused: their folders hold symbolic links
STUDENTS = ("reference", "stubs", *MISTAKES, CORRECT, *HOSTILE, "snoop", *RED_TEAM)
STUB_BASED = ("stubs", *HOSTILE, "snoop", "html_hostile")  # hold no reference code of their own
TWINS = ("reference", "stubs", *MISTAKES, CORRECT, "hidden_marker")  # graded serially and killed-and-resumed
NBGRADER_TIMEOUT_S = 900
ISOLATION = sandbox.detect(Settings.from_environment())
if os.environ.get("VAE_REQUIRE_SANDBOX") == "1" and not ISOLATION.sandboxed:
    raise RuntimeError(f"VAE_REQUIRE_SANDBOX=1 but bubblewrap is not usable: {ISOLATION.reason}")
needs_sandbox = pytest.mark.skipif(
    not ISOLATION.sandboxed,
    reason=f"only an OS sandbox keeps a notebook from reading and writing as the instructor ({ISOLATION.reason})",
)


def student_notebooks(release_nb: NotebookNode) -> dict[str, NotebookNode]:
    """What each student hands in: the release notebook with their solution cells filled in."""
    reference = reference_notebook(release_nb)
    notebooks = {"reference": reference, "stubs": nbformat.from_dict(release_nb)}
    for name in (*MISTAKES, CORRECT):
        nb = nbformat.from_dict(reference)
        for problem, source in VARIANTS[name].replaces.items():
            cell_by_id(nb, problem).source = source.rstrip("\n")
        notebooks[name] = nb
    # Edits a locked test cell so that it would pass: nbgrader must restore the original.
    cell_by_id(notebooks[TAMPERED], TAMPERED_CELL).source = "pass  # nothing to check here"
    # Deletes a check cell: nbgrader must put it back, and it gets the grader's score.
    notebooks[CORRECT].cells.remove(cell_by_id(notebooks[CORRECT], DELETED_CELL))
    return notebooks


def hostile_notebooks(stubs: NotebookNode, course: Path) -> dict[str, NotebookNode]:
    """The stubs with one cell of the student's own added after the setup cell."""
    notebooks = {}
    for student, source in [*HOSTILE.items(), ("snoop", snoop_source(course))]:
        nb = nbformat.from_dict(stubs)
        nb.cells.insert(2, nbformat.v4.new_code_cell(source.strip()))
        notebooks[student] = nb
    return notebooks


def nbgrader(course: Path, *args: str) -> subprocess.Popen:
    """`python -m nbgrader ARGS` in the course directory, as an instructor runs it."""
    bin_dir = str(Path(sys.executable).parent)  # nbgrader's gradebook calls `alembic` on PATH
    env = dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, what: str, status: int = 0) -> str:
    log, _ = process.communicate(timeout=NBGRADER_TIMEOUT_S)
    assert process.returncode == status, f"nbgrader {what}: exit {process.returncode}, not {status}:\n{log[-4000:]}"
    return log


def link_submissions(course: Path, notebook: NotebookNode) -> None:
    """Two students whose folders hold symbolic links: a notebook that is the instructor's source
    notebook, and a correct notebook with "notes" that are the gradebook."""
    source = course / "source" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME
    folder = course / "submitted" / "linked_notebook" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / SOURCE_NOTEBOOK_NAME).symlink_to(source)
    folder = course / "submitted" / "linked_notes" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / SOURCE_NOTEBOOK_NAME)
    (folder / "notes.txt").symlink_to(course / "gradebook.db")


@dataclass
class Run:
    course: Path
    submitted: dict[str, NotebookNode]
    nbgrader_scores: dict[str, dict[str, float]]  # student -> problem -> score in the gradebook
    answers: dict[str, list[tuple[float | None, bool]]]  # student -> (score, needs manual grade)
    standalone: dict[str, dict]  # student -> the standalone grader's record
    seconds: dict[str, float]
    log: str  # nbgrader autograde's
    written: list[Path]  # files the snooping notebook left outside its sandbox
    pristine: Path  # a copy of the course as handed in, before any autograde


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    seconds = {}
    started = time.perf_counter()
    out = tmp_path_factory.mktemp("nbgrader")
    release = build_release(out)
    course = out / "course"
    seconds["release"] = time.perf_counter() - started
    release_nb = nbformat.read(release / SOURCE_NOTEBOOK_NAME, as_version=4)
    notebooks = student_notebooks(release_nb)
    notebooks.update(hostile_notebooks(notebooks["stubs"], course))
    notebooks["html_hostile"] = hostile_html_notebook(notebooks["stubs"])
    notebooks["hidden_marker"] = hidden_marker_notebook(notebooks["reference"])
    paths = {}
    for student, nb in notebooks.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        paths[student] = folder / SOURCE_NOTEBOOK_NAME
        nbformat.write(nb, paths[student])
    pristine = out / "pristine"
    shutil.copytree(course, pristine)
    link_submissions(course, notebooks["reference"])

    started = time.perf_counter()
    # One nbgrader autograde for the whole class, the notebooks' own cells run too; the
    # standalone grader runs meanwhile, here. The two linked submissions fail: exit status 1.
    autograde = nbgrader(course, "autograde", ASSIGNMENT, "--force", "--SandboxedAutograde.execute_notebook=True")
    standalone = {student: grade(Submission(student, path), Settings.from_environment()) for student, path in paths.items()}
    seconds["standalone (while autograde runs)"] = time.perf_counter() - started
    log = finish(autograde, "autograde", status=1)
    seconds["autograde"] = time.perf_counter() - started
    seconds["autograde per notebook"] = seconds["autograde"] / len(paths)

    started = time.perf_counter()
    finish(nbgrader(course, "generate_feedback", ASSIGNMENT, "--force"), "generate_feedback")
    finish(nbgrader(course, "export", "--to", "grades.csv"), "export")
    finish(nbgrader(course, "export", "--exporter=autograder.nbgrader_export.ProblemScoresExporter",
                    "--to", "problems.csv"), "export (per problem)")
    seconds["generate_feedback + 2 exports"] = time.perf_counter() - started

    from nbgrader.api import Gradebook

    scores, answers = {}, {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        answer_ids = [c.name for c in gradebook.find_notebook(ASSIGNMENT, ASSIGNMENT).grade_cells
                      if c.cell_type == "markdown"]
        for student in STUDENTS:
            def find(cell_id: str):
                return gradebook.find_grade(cell_id, ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {p: find("check_" + p).score for p in PROBLEM_POINTS}
            answers[student] = [(find(a).score, find(a).needs_manual_grade) for a in answer_ids]
    # What the snooping notebook wrote outside its sandbox (where there is none: cleaned up).
    written = [*course.rglob(MARK), *(Path(folder, MARK) for folder in (Path.home(), PROJECT, Path("/tmp"))
                                      if Path(folder, MARK).exists())]
    for path in written:
        path.unlink()
    print("\n" + "\n".join(f"{what}: {s:.1f} s" for what, s in seconds.items()))
    return Run(course, notebooks, scores, answers, standalone, seconds, log, written, pristine)


def expected_scores(run: Run, student: str) -> dict[str, float]:
    record = run.standalone[student]
    assert record["error"] is None, (student, record["error"])
    return {p: float(record["problems"][p]["score"]) for p in PROBLEM_POINTS}


def test_autograde_gives_the_standalone_scores_per_problem_whatever_the_kernel_does(run):
    rows = []
    for student in STUDENTS:
        expected = expected_scores(run, student)
        rows.append(f"{student:28s} " + " ".join(
            f"{run.nbgrader_scores[student][p]:g}/{expected[p]:g}" for p in PROBLEM_POINTS))
        assert run.nbgrader_scores[student] == pytest.approx(expected), student
    print("\nnbgrader/standalone per problem (" + ", ".join(PROBLEM_POINTS) + ")\n" + "\n".join(rows))
    # The submissions span the range: full marks, nothing, and partial credit read by nbgrader.
    assert sum(run.nbgrader_scores["reference"].values()) == TOTAL_POINTS
    assert sum(run.nbgrader_scores[CORRECT].values()) == TOTAL_POINTS
    for student in STUB_BASED:  # the tampering earned nothing
        assert sum(run.nbgrader_scores[student].values()) == 0, student
    for name in MISTAKES:
        problem = VARIANTS[name].problem
        assert 0 < run.nbgrader_scores[name][problem] < PROBLEM_POINTS[problem], name


def autograded(run: Run, student: str) -> NotebookNode:
    path = run.course / "autograded" / student / ASSIGNMENT / SOURCE_NOTEBOOK_NAME
    return nbformat.read(path, as_version=4)


def test_graded_cells_show_the_graders_messages_and_score_only(run):
    for student in STUDENTS:
        nb = autograded(run, student)
        for problem in PROBLEM_POINTS:
            cell = cell_by_id(nb, "check_" + problem)
            assert [o.output_type for o in cell.outputs] == ["stream", "execute_result"], (student, problem)
            assert cell.outputs[0].text.startswith(f"{problem}: ") and "from the grader's tests" in cell.outputs[0].text
            assert float(cell.outputs[1].data["text/plain"]) == run.nbgrader_scores[student][problem]


def test_the_demonstrations_ran_in_the_sandbox_and_their_plots_are_kept(run):
    nb = autograded(run, "reference")
    plots = [c for c in nb.cells if c.cell_type == "code"
             and any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(plots) >= 5
    assert "isolation: " + sandbox.describe(ISOLATION) in run.log
    if not ISOLATION.sandboxed:
        assert "NO SANDBOX" in run.log


def test_an_edited_locked_test_cell_is_restored(run):
    submitted = cell_by_id(run.submitted[TAMPERED], TAMPERED_CELL).source
    graded = cell_by_id(autograded(run, TAMPERED), TAMPERED_CELL).source
    original = cell_by_id(build_notebook(), TAMPERED_CELL).source
    assert submitted.startswith("pass") and graded == original
    problem = VARIANTS[TAMPERED].problem
    assert run.nbgrader_scores[TAMPERED][problem] < PROBLEM_POINTS[problem]


def test_written_questions_wait_for_manual_grading(run):
    assert len(run.answers["reference"]) == 3
    assert all(needs for _, needs in run.answers["reference"])  # answered: graded by hand
    assert all(score == 0 and not needs for score, needs in run.answers["stubs"])  # left blank


def feedback(run: Run, student: str) -> str:
    return html.unescape((run.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text())


def test_feedback_shows_what_was_checked_and_the_likely_mistake(run):
    text = feedback(run, "kl_missing_half")
    hint = next(m.hint for m in mistakes.MISTAKES if m.code == "kl_missing_half")
    assert "Checked:" in text and "Likely mistake: " + hint in text


def secret_lines() -> dict[str, set[str]]:
    """Distinctive lines of the reference's bodies and of the hidden tests: none may reach a
    student's feedback (lines the release notebook also holds are not secret)."""
    release = "\n".join(c.source for c in build_notebook().cells if BEGIN_SOLUTION not in c.source)
    reference = {line.strip() for cell in build_notebook().cells if BEGIN_SOLUTION in cell.source
                 for line in cell.source.split(BEGIN_SOLUTION, 1)[1].split("\n")}
    hidden = {line.strip() for path in HIDDEN_TESTS.glob("*.py") for line in path.read_text().splitlines()}
    distinctive = lambda lines: {line for line in lines  # noqa: E731
                                 if len(line) >= 30 and line not in release and END_SOLUTION not in line}
    return {"reference": distinctive(reference), "hidden tests": distinctive(hidden)}


def test_no_feedback_shows_reference_or_hidden_test_code(run):
    secrets = secret_lines()
    assert len(secrets["reference"]) > 20 and len(secrets["hidden tests"]) > 100
    # Without a sandbox the snooping notebook does read them (its own test skips, saying so).
    for student in STUDENTS if ISOLATION.sandboxed else [s for s in STUDENTS if s != "snoop"]:
        text = feedback(run, student)
        assert "nbgrader_autograde.py" not in text, student
        if student != "hidden_marker":  # who wrote the marker in an answer
            assert "BEGIN HIDDEN TESTS" not in text, student
        leaked = {line for line in secrets["hidden tests"] if line in text}
        if student in STUB_BASED:
            leaked |= {line for line in secrets["reference"] if line in text}
        assert not leaked, (student, sorted(leaked)[:5])


@needs_sandbox
def test_the_snooping_notebook_read_nothing_and_wrote_nothing_outside(run):
    printed = "".join(o.get("text", "") for o in autograded(run, "snoop").cells[2].outputs).splitlines()
    assert sum(line.startswith("cannot read ") for line in printed) == 5, printed
    assert not [line for line in printed if line.startswith("READ ")], printed
    # It may write into its sandbox's own /tmp and working folder, gone with it; nowhere else.
    assert not run.written, run.written


def test_export_csv_has_the_autograded_totals(run):
    with (run.course / "grades.csv").open() as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    for student in STUDENTS:
        assert float(rows[student]["raw_score"]) == pytest.approx(sum(expected_scores(run, student).values()))


def test_per_problem_export_has_the_standalone_scores(run):
    with (run.course / "problems.csv").open() as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted([*STUDENTS, *LINKED])  # the refused ones too, with nothing graded
    for student in STUDENTS:
        got = {p: float(rows[student]["check_" + p]) for p in PROBLEM_POINTS}
        assert got == pytest.approx(expected_scores(run, student)), student
    assert rows["reference"]["q_closed_form_kl"] == "" and rows["reference"]["needs_manual_grade"] == "True"
    assert float(rows["stubs"]["q_closed_form_kl"]) == 0


LOG_LINE = re.compile(r"^\[AutogradeApp \d\d:\d\d:\d\d \| (INFO|WARNING|ERROR)\] ")
FAILED_STUDENT = re.compile(r"There was an error processing assignment 'vae' for student '([^']+)'")


def test_the_log_tells_the_progress_and_nothing_else_warns(run):
    lines = run.log.splitlines()
    assert "SAWarning" not in run.log and "Warning:" not in run.log  # no Python warnings at all
    assert all(LOG_LINE.match(line) for line in lines if line.startswith("[AutogradeApp")), "every line timed"
    total = len(STUDENTS) + len(LINKED)
    progress = re.findall(rf"\[(\d+)/{total}\] (\S+): .*; ([0-9.]+) s, .* so far, about .* left", run.log)
    assert [int(done) for done, _, _ in progress] == list(range(1, total + 1))
    assert sorted(student for _, student, _ in progress) == sorted([*STUDENTS, *LINKED])
    assert f"autograde finished: {total} of {total} notebook(s)" in run.log
    assert f"{len(STUDENTS)} graded, {len(LINKED)} refused ({', '.join(sorted(LINKED))})" in run.log
    assert "isolation: " + sandbox.describe(ISOLATION) in run.log
    # Every notebook nbgrader handed over was the one sanitized and graded ahead.
    assert "graded here" not in run.log and run.log.count(", graded ahead;") == len(STUDENTS)


def test_only_a_really_edited_locked_cell_is_warned_about(run):
    assert "Attribute 'checksum'" not in run.log  # nbgrader's false alarm on every check cell (#1961)
    changed = re.findall(r"\] (\S+) changed the locked cell (\S+) \(its checksum", run.log)
    assert changed == [(TAMPERED, TAMPERED_CELL)]


def test_symbolically_linked_submissions_are_refused(run):
    assert set(FAILED_STUDENT.findall(run.log)) == set(LINKED)  # nbgrader's failures: those two only
    for student in LINKED:
        assert f"{student}: refused, the submission holds symbolic links" in run.log
        assert f"SubmissionRefused: {student}: not autograded:" in run.log
        assert not (run.course / "autograded" / student / ASSIGNMENT).exists()  # nbgrader removed its copy
        assert not (run.course / "feedback" / student / ASSIGNMENT).exists()


def test_feedback_and_the_formgrader_show_no_active_markup(run):
    config = course_config()
    for student in [*STUDENTS]:
        page = (run.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert active_markup(page) == [], student
    autograded_path = run.course / "autograded" / "html_hostile" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME
    view = formgrader_view(autograded_path, config)
    assert active_markup(view) == [] and HOSTILE_MARK in view
    feedback_page = (run.course / "feedback" / "html_hostile" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert HOSTILE_MARK in feedback_page and "My answer, with some extras." in feedback_page
    # What the sandbox sent back of the hostile cell: text and images only.
    outputs = autograded(run, "html_hostile").cells[2].outputs
    assert outputs and all(set(o.get("data", {})) <= {"text/plain", "image/png", "image/jpeg"} for o in outputs)


def test_begin_hidden_tests_in_a_students_answer_does_not_break_feedback(run):
    text = feedback(run, "hidden_marker")
    assert "I wonder what the grader checks." in text and "BEGIN HIDDEN TESTS" in text  # the student's own words
    assert sum(run.nbgrader_scores["hidden_marker"].values()) == TOTAL_POINTS


@dataclass
class Twins:
    serial: Path  # graded one notebook at a time in nbgrader's process (ahead = False)
    ahead: Path  # graded ahead, killed halfway, then run again
    stored_at_kill: int
    logs: dict[str, str]


def _stored(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


@pytest.fixture(scope="module")
def twins(run, tmp_path_factory) -> Twins:
    """The course's default autograde (cells not run) of TWINS, serially and ahead-killed-resumed."""
    base = tmp_path_factory.mktemp("twins")
    courses = {}
    for name in ("serial", "ahead"):
        courses[name] = base / name
        shutil.copytree(run.pristine, courses[name])
        for folder in (courses[name] / "submitted").iterdir():
            if folder.name not in TWINS:
                shutil.rmtree(folder)
    logs = {"serial": finish(nbgrader(courses["serial"], "autograde", ASSIGNMENT, "--force",
                                      "--SandboxedAutograde.ahead=False"), "autograde (serial)")}
    first = nbgrader(courses["ahead"], "autograde", ASSIGNMENT, "--force")
    store = courses["ahead"] / "autograde_results.sqlite"
    deadline = time.monotonic() + NBGRADER_TIMEOUT_S
    while first.poll() is None and _stored(store) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # killed halfway (or just after the end, on a fast machine)
    logs["killed"], _ = first.communicate()
    stored_at_kill = _stored(store)
    logs["again"] = finish(nbgrader(courses["ahead"], "autograde", ASSIGNMENT, "--force"), "autograde (again)")
    for course in courses.values():
        finish(nbgrader(course, "generate_feedback", ASSIGNMENT, "--force"), "generate_feedback")
    return Twins(courses["serial"], courses["ahead"], stored_at_kill, logs)


def gradebook_contents(course: Path) -> dict:
    """Every grade and comment of every submission, as nbgrader stored them."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        return {(student, grade.name): (grade.auto_score, grade.manual_score, grade.needs_manual_grade)
                for student in TWINS
                for grade in gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student).grades} | {
               (student, comment.name, "comment"): (comment.auto_comment, comment.manual_comment)
                for student in TWINS
                for comment in gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student).comments}


def test_serial_and_ahead_runs_give_the_same_gradebook_notebooks_and_feedback(twins):
    assert "graded here" in twins.logs["serial"] and "graded ahead" not in twins.logs["serial"]
    serial, ahead = gradebook_contents(twins.serial), gradebook_contents(twins.ahead)
    assert len(serial) >= len(TWINS) * 10  # 7 check cells and 3 answers each, and the comments
    assert serial == ahead
    for student in TWINS:
        for folder, name in [("autograded", SOURCE_NOTEBOOK_NAME), ("feedback", f"{ASSIGNMENT}.html")]:
            one, other = (course / folder / student / ASSIGNMENT / name for course in (twins.serial, twins.ahead))
            assert one.read_bytes() == other.read_bytes(), (student, folder)


def test_a_killed_run_is_resumed_from_the_store(twins):
    assert twins.stored_at_kill >= 2
    reused = re.search(r"(\d+) notebook\(s\) graded before with the same grader, taken from", twins.logs["again"])
    assert reused and int(reused[1]) == twins.stored_at_kill  # all it had stored: none graded twice
    assert twins.logs["again"].count("taken from the store") == int(reused[1])
    assert f"autograde finished: {len(TWINS)} of {len(TWINS)} notebook(s)" in twins.logs["again"]
