"""assignment/release.py: the nbgrader release leaks nothing and ships what students need."""
import ast
import inspect
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from assignment import release
from assignment.contract import PROBLEM_POINTS
from assignment.notebook import ASSIGNMENT, SOLUTIONS_PY, SOURCE_NOTEBOOK_NAME, grading_code_cells
from assignment.release import ReleaseError, build_release, main_release, public_files
from autograder.notebook_execution import NotebookExecutionError, execute_notebook
from solutions import vae as reference

FORBIDDEN = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS")
STUB_NAMESPACE = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional,
                  "Tensor": torch.Tensor, "math": __import__("math")}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert build_release(out) == out / ASSIGNMENT
    return out


def release_texts(out: Path) -> dict[str, str]:
    """Every file of the release folder and of the zip, as text (binary files decoded loosely)."""
    texts = {str(path.relative_to(out)): path.read_bytes().decode("utf-8", "replace")
             for path in sorted((out / ASSIGNMENT).rglob("*")) if path.is_file()}
    with zipfile.ZipFile(out / f"{ASSIGNMENT}.zip") as zf:
        for name in zf.namelist():
            texts["zip:" + name] = zf.read(name).decode("utf-8", "replace")
    return texts


def code_of(name: str, text: str) -> str:
    """The code a reader sees: cell sources of a notebook, the text itself otherwise."""
    if name.endswith(".ipynb"):
        return "\n".join(cell["source"] if isinstance(cell["source"], str)
                         else "".join(cell["source"]) for cell in json.loads(text)["cells"])
    return text


def normalise(text: str) -> str:
    return re.sub(r"\s+", "", text)


def is_trivial(statement: ast.stmt, contract_names: set[str]) -> bool:
    """Statements that tell nothing the contract does not: `pass`, `return a, b`, the kept
    `super().__init__()`, and plain calls of contract functions or methods such as
    `z = reparameterize(mu, logvar)` (vae_checks quotes that one in a failure message)."""
    if isinstance(statement, ast.Pass) or ast.unparse(statement) == "super().__init__()":
        return True
    value = getattr(statement, "value", None)
    if isinstance(statement, ast.Return):
        items = value.elts if isinstance(value, ast.Tuple) else [value]
        if all(item is None or isinstance(item, ast.Name) for item in items):
            return True
    if isinstance(statement, (ast.Assign, ast.Return)) and isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in contract_names and all(isinstance(a, ast.Name) for a in value.args)
    return False


def reference_bodies() -> dict[str, list[str]]:
    """Normalised source of each non-trivial body statement of every reference def and method."""
    text = SOLUTIONS_PY.read_text()
    tree = ast.parse(text)
    functions = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            functions += [(f"{node.name}.{item.name}", item) for item in node.body
                          if isinstance(item, ast.FunctionDef)]
    contract_names = {name.split(".")[-1] for name, _ in functions}
    bodies = {}
    for name, function in functions:
        statements = [s for s in function.body
                      if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        bodies[name] = [normalise(ast.get_source_segment(text, s))
                        for s in statements if not is_trivial(s, contract_names)]
    return bodies


def test_release_holds_notebook_public_files_requirements_and_zip(out):
    folder = out / ASSIGNMENT
    names = {path.name for path in folder.iterdir()}
    expected = {SOURCE_NOTEBOOK_NAME, "requirements.txt"} | {p.name for p in public_files()}
    assert names == expected
    assert "__init__.py" not in names and "__pycache__" not in names
    for path in public_files():
        assert (folder / path.name).read_bytes() == path.read_bytes()
    requirements = (folder / "requirements.txt").read_text()
    for package in ("torch", "numpy", "matplotlib", "jupyter"):
        assert re.search(rf"^{package}>=", requirements, re.M)
    with zipfile.ZipFile(out / f"{ASSIGNMENT}.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"{ASSIGNMENT}/{name}" for name in expected)
        assert zf.read(f"{ASSIGNMENT}/{SOURCE_NOTEBOOK_NAME}") == (
            folder / SOURCE_NOTEBOOK_NAME).read_bytes()


def test_course_directory_is_kept_for_autograde(out):
    course = out / "course"
    assert (course / "source" / ASSIGNMENT / SOURCE_NOTEBOOK_NAME).is_file()
    assert (course / "gradebook.db").is_file()
    config = (course / "nbgrader_config.py").read_text()
    assert 'c.CourseDirectory.course_id = "vae-course"' in config
    # autograde: nbgrader's own preprocessors, with Execute replaced by the sandboxed one.
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute
    from traitlets.config import Config
    from traitlets.utils.importstring import import_item

    from autograder.nbgrader_autograde import SandboxedAutograde

    loaded = Config()
    exec(config, {"get_config": lambda: loaded})  # noqa: S102 - the file this release wrote
    defaults = Autograde.class_traits()["autograde_preprocessors"].default()
    assert defaults[0] is Execute
    assert [import_item(name) for name in loaded.Autograde.autograde_preprocessors] == [
        SandboxedAutograde, *defaults[1:]]
    assert loaded.SandboxedAutograde.require_sandbox is False
    assert loaded.OverwriteCells.add_missing_cells is True


def test_no_marker_anywhere_in_the_release(out):
    for name, text in release_texts(out).items():
        for marker in FORBIDDEN:
            assert marker not in text, f"{marker!r} in {name}"


def test_no_reference_body_anywhere_in_the_release(out):
    bodies = reference_bodies()
    assert sum(map(len, bodies.values())) >= 15  # the scan sees the reference
    texts = {name: normalise(code_of(name, text)) for name, text in release_texts(out).items()
             if not name.endswith(".npz")}
    for function, statements in bodies.items():
        for statement in statements:
            for name, text in texts.items():
                assert statement not in text, f"body of {function} ({statement}) in {name}"


def test_released_stubs_raise_not_implemented(out):
    nb = nbformat.read(out / ASSIGNMENT / SOURCE_NOTEBOOK_NAME, as_version=4)
    namespace = dict(STUB_NAMESPACE)
    solution_cells = [c for c in nb.cells
                      if c.cell_type == "code" and c.metadata["nbgrader"].get("solution")]
    assert [c.metadata.nbgrader.grade_id for c in solution_cells] == list(PROBLEM_POINTS)
    for cell in solution_cells:
        exec(cell.source, namespace)
    for name in PROBLEM_POINTS:  # a stub raises before it looks at its arguments; a class, in __init__
        required = [p for p in inspect.signature(getattr(reference, name)).parameters.values()
                    if p.default is inspect.Parameter.empty]
        with pytest.raises(NotImplementedError):
            namespace[name](*[torch.zeros(3, 4)] * len(required))


def test_released_notebook_keeps_grading_metadata(out):
    nb = nbformat.read(out / ASSIGNMENT / SOURCE_NOTEBOOK_NAME, as_version=4)
    meta = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]
            for c in nb.cells if "nbgrader" in c.metadata}
    for name, points in PROBLEM_POINTS.items():
        assert meta["check_" + name]["points"] == points and meta["check_" + name]["locked"]
        assert "checksum" in meta[name]  # nbgrader's unchanged-solution detection
    labels = [label for label, _ in grading_code_cells(nb)]
    assert [label for label in labels if label in PROBLEM_POINTS] == list(PROBLEM_POINTS)
    assert not any(label.startswith("check_") for label in labels)


def test_nbgrader_failure_is_a_short_error_with_the_log(monkeypatch, tmp_path):
    def failed_run(command, **kwargs):
        assert command[:4] == [sys.executable, "-m", "nbgrader", "generate_assignment"]
        return subprocess.CompletedProcess(command, 1, "[INFO] converting\n", "[ERROR] bad cell\n")

    monkeypatch.setattr(release.subprocess, "run", failed_run)
    with pytest.raises(ReleaseError, match=r"^nbgrader generate_assignment failed \(exit 1\)$") as caught:
        release.generate_assignment(tmp_path)
    assert "[ERROR] bad cell" in caught.value.log


def test_missing_release_notebook_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(release.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 0, "", ""))
    with pytest.raises(ReleaseError, match="wrote no vae.ipynb"):
        release.generate_assignment(tmp_path)


def test_a_course_with_submissions_is_never_replaced(tmp_path):
    (tmp_path / "course" / "submitted" / "alice").mkdir(parents=True)
    with pytest.raises(ReleaseError, match="already holds submitted/"):
        build_release(tmp_path)
    assert (tmp_path / "course" / "submitted" / "alice").is_dir()


def test_main_release_reports_errors_without_traceback(monkeypatch, capsys, tmp_path):
    def failing(out):
        raise ReleaseError("nbgrader generate_assignment failed (exit 1)", "[ERROR] the detail")

    monkeypatch.setattr(release, "build_release", failing)
    assert main_release(tmp_path) == 1
    err = capsys.readouterr().err
    assert "error: nbgrader generate_assignment failed" in err and "[ERROR] the detail" in err
    assert "Traceback" not in err


def test_main_release_prints_where_things_are(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(release, "build_release", lambda out: out / ASSIGNMENT)
    assert main_release(tmp_path) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / ASSIGNMENT) in printed and str(tmp_path / "vae.zip") in printed
    assert str(tmp_path / "course") in printed


def test_execute_notebook_uses_this_python_cwd_and_keeps_figures(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    code = ("import sys, os, helper\n"
            "import matplotlib.pyplot as plt\n"
            "print(sys.executable, os.getcwd(), helper.VALUE, 'solutions' in sys.modules)\n"
            "plt.plot([0, 1])\n"
            "plt.show()")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbformat.write(nb, tmp_path / "ok.ipynb")
    executed = execute_notebook(tmp_path / "ok.ipynb", tmp_path, timeout=60)
    outputs = executed.cells[0].outputs
    words = outputs[0]["text"].split()
    assert words[0] == sys.executable and Path(words[1]).resolve() == tmp_path.resolve()
    assert words[2:] == ["42", "False"]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    assert not any(output.get("name") == "stderr" for output in outputs)


def test_execute_notebook_names_the_failing_cell(tmp_path):
    cells = [nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_code_cell("1 / 0", metadata={"nbgrader": {"grade_id": "boom"}})]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "bad.ipynb")
    with pytest.raises(NotebookExecutionError, match="cell boom failed: ZeroDivisionError"):
        execute_notebook(tmp_path / "bad.ipynb", tmp_path, timeout=60)
