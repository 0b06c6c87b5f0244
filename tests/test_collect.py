"""Finding submissions and reading their code, including bad input."""
import json
import os
import subprocess
import sys
import time

import nbformat
import pytest

from autograder.collect import (MAX_CELLS, MAX_NESTING, MAX_SUBMISSION_BYTES, SubmissionError, UsageError,
                                find_submissions, printable, read_cells)
from autograder.untrusted.worker import python_source


def notebook(*sources: str, **metadata) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s, metadata=metadata) for s in sources]
    return nbformat.writes(nb)


def test_file_per_student_and_folder_per_student(tmp_path):
    (tmp_path / "alice.py").write_text("x = 1\n")
    (tmp_path / "bob.ipynb").write_text(notebook("x = 1"))
    nested = tmp_path / "carol" / "vae"
    nested.mkdir(parents=True)
    (nested / "vae.ipynb").write_text(notebook("x = 1"))
    (nested / "scratch.py").write_text("")
    found = find_submissions([tmp_path])
    assert [(s.id, s.path.name) for s in found] == [("alice", "alice.py"), ("bob", "bob.ipynb"), ("carol", "vae.ipynb")]


def test_missing_path_and_duplicate_ids_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        find_submissions([tmp_path / "nope"])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "alice.py").write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "alice.py").write_text("")
    with pytest.raises(UsageError, match="alice"):
        find_submissions([tmp_path / "a", tmp_path / "b"])


def test_a_notebooks_cells_come_as_written_and_the_worker_makes_them_python(tmp_path):
    path = tmp_path / "s.ipynb"
    path.write_text(notebook("%matplotlib inline\n!pip install torch\nx = 1", "%%time\ny = 2"))
    cells = read_cells(path)
    assert [source for _, source in cells] == ["%matplotlib inline\n!pip install torch\nx = 1", "%%time\ny = 2"]
    namespace = {"get_ipython": lambda: type("Shell", (), {"__getattr__": lambda self, n: (lambda *a, **k: None)})()}
    for _, source in cells:
        exec(compile(python_source(source), "cell", "exec"), namespace)
    assert namespace["x"] == 1 and namespace["y"] == 2


def test_plain_python_is_not_given_to_ipython_and_a_cell_of_many_magics_fails_fast():
    assert python_source("x = 1\ny = 2\n") == "x = 1\ny = 2\n"
    started = time.perf_counter()
    for source in ["%ls\n" * 600, "%ls\n" * 499 + "x = 1\n" * 170_000]:  # the second kept IPython busy an hour
        with pytest.raises(SyntaxError, match="lines of IPython syntax"):
            python_source(source)
    assert time.perf_counter() - started < 1


def test_demo_and_test_cells_are_not_run(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("a = 1"),
        nbformat.v4.new_code_cell("train()", metadata={"vae_assignment": {"skip_when_grading": True}}),
        nbformat.v4.new_code_cell("check()", metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "check_x"}}),
    ]
    path = tmp_path / "s.ipynb"
    path.write_text(nbformat.writes(nb))
    assert [source for _, source in read_cells(path)] == ["a = 1"]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b'{"cells": [', "not valid JSON"),
    (b'{"hello": 1}', "not a Jupyter notebook"),
])
def test_unreadable_notebooks(tmp_path, content, message):
    path = tmp_path / "s.ipynb"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=message):
        read_cells(path)


def test_a_module_is_read_as_it_is_and_compiled_only_in_the_worker(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("def f(:\n")
    assert read_cells(path) == [("s.py", "def f(:\n")]


def test_old_nbformat_is_upgraded(tmp_path):
    old = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [
        {"cells": [{"cell_type": "code", "input": "x = 41 + 1", "language": "python", "outputs": [], "metadata": {}}]}]}
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(old))
    assert [source.strip() for _, source in read_cells(path)] == ["x = 41 + 1"]


READ_A_NOTEBOOK = """
import sys
from pathlib import Path
from autograder.collect import read_cells
import nbformat
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell("x = 1")]
print(read_cells(Path("a.ipynb"), nbformat.writes(nb).encode()), sorted({"lark", "rfc3987_syntax"} & {
    name for name, module in sys.modules.items() if module is not None}))
"""


def test_a_grading_process_reads_notebooks_without_the_slow_iri_checker():
    """rfc3987_syntax (through nbformat's jsonschema) costs every grading process 1.5 s."""
    result = subprocess.run([sys.executable, "-c", READ_A_NOTEBOOK], capture_output=True, text=True, timeout=120,
                            check=True)
    assert result.stdout.strip() == "[('cell 1', 'x = 1')] []"


# --- symbolic links ---------------------------------------------------------------------------
def test_a_submission_that_is_a_symbolic_link_is_refused_and_the_others_are_found(tmp_path):
    target = tmp_path / "solutions"
    target.mkdir()
    (target / "vae.py").write_text("print('the reference')\n")
    class_folder = tmp_path / "class"
    class_folder.mkdir()
    (class_folder / "alice.py").write_text("x = 1\n")
    (class_folder / "evil.py").symlink_to(target / "vae.py")
    (class_folder / "gone.ipynb").symlink_to(tmp_path / "nothing-there")
    found = {s.id: s for s in find_submissions([class_folder])}
    assert sorted(found) == ["alice", "evil", "gone"] and found["alice"].refused is None
    assert "evil.py is a symbolic link" in found["evil"].refused and str(target) in found["evil"].refused
    for student in ("evil", "gone"):
        with pytest.raises(SubmissionError, match="symbolic links are refused"):
            found[student].loaded()
    assert find_submissions([class_folder / "evil.py"])[0].refused  # named on the command line too


def test_a_student_folder_that_holds_or_is_a_symbolic_link_is_refused(tmp_path):
    class_folder, elsewhere = tmp_path / "submitted", tmp_path / "course"
    (elsewhere / "source").mkdir(parents=True)
    (elsewhere / "source" / "vae.ipynb").write_text(notebook("x = 1"))
    for student, layout in [("bob", "notes"), ("carol", "folder"), ("dave", "notebook"), ("erin", "whole")]:
        folder = class_folder / student / "vae"
        if layout == "whole":
            class_folder.mkdir(exist_ok=True)
            (class_folder / student).symlink_to(elsewhere, target_is_directory=True)
            continue
        folder.mkdir(parents=True)
        if layout != "notebook":
            (folder / "vae.ipynb").write_text(notebook("x = 1"))
        if layout == "notes":
            (folder / "notes.txt").symlink_to(elsewhere / "gradebook.db")
        elif layout == "folder":
            (folder / "source").symlink_to(elsewhere / "source", target_is_directory=True)
        else:
            (folder / "vae.ipynb").symlink_to(elsewhere / "source" / "vae.ipynb")
    (class_folder / "ada" / "vae").mkdir(parents=True)
    (class_folder / "ada" / "vae" / "vae.ipynb").write_text(notebook("x = 1"))
    found = {s.id: s for s in find_submissions([class_folder])}
    assert sorted(found) == ["ada", "bob", "carol", "dave", "erin"]
    assert found["ada"].refused is None and found["ada"].path.name == "vae.ipynb"
    assert "notes.txt" in found["bob"].refused and "vae/source" in found["carol"].refused
    assert "vae/vae.ipynb" in found["dave"].refused and "symbolic link" in found["erin"].refused
    assert all("symbolic link" in found[s].refused for s in ("bob", "carol", "dave", "erin"))


# --- names and sizes a student chose ----------------------------------------------------------------
def test_ids_from_names_that_are_not_printable_text_are_escaped_one_to_one(tmp_path):
    names = [os.fsdecode(b"\xff\xfe.py"), "line\nbreak.py", "rtl\u202egnp.py", "back\\slash.py", "Zo\u00eb.py"]
    for name in names:
        (tmp_path / name).write_text("x = 1\n")
    ids = sorted(s.id for s in find_submissions([tmp_path]))
    assert ids == sorted(["\\xff\\xfe", "line\\x0abreak", "rtl\\u202egnp", "back\\\\slash", "Zo\u00eb"])
    assert all(i.encode("utf-8") and i.isprintable() for i in ids)
    assert printable("a\\x41") != printable("aA")  # a backslash in a name cannot pass for an escape


def test_a_file_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "big.py"
    with open(path, "wb") as stream:
        stream.truncate(MAX_SUBMISSION_BYTES + 1)
    with pytest.raises(SubmissionError, match="20,971,521 bytes, more than the 20 MiB"):
        read_cells(path)
    with pytest.raises(SubmissionError, match="more than the 20 MiB"):
        read_cells(tmp_path / "given.py", b"x" * (MAX_SUBMISSION_BYTES + 1))


@pytest.mark.parametrize(("content", "message"), [
    (b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than"),
    (b'{"cells": [], "metadata": ' + b'{"a": ' * (MAX_NESTING + 5) + b"1" + b"}" * (MAX_NESTING + 5) + b"}",
     "nested more than"),
    (json.dumps({"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": []}] * (MAX_CELLS + 1),
                 "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode(), "cells, more than"),
    (json.dumps({"cells": [{"cell_type": "code", "id": "a", "source": "x = '\ud800'", "metadata": {}, "outputs": [],
                            "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode(),
     "not valid Unicode"),
])
def test_hostile_notebooks_are_refused_before_nbformat_parses_them(tmp_path, content, message):
    path = tmp_path / "s.ipynb"
    path.write_bytes(content)
    started = time.perf_counter()
    with pytest.raises(SubmissionError, match=message):
        read_cells(path)
    assert time.perf_counter() - started < 5

