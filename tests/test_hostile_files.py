"""Files a student hands in to stop the grading of the whole class, or to stall the grader.

Each used to stop `vae-assignment grade` (no JSON, no CSV for anyone, on every rerun) or
`similarity`, or to keep the trusted process busy for an hour; each is now its own
submission's error. A corpus of such files is graded as a class beside an honest submission,
and the reader is fuzzed with hypothesis: whatever the bytes, the batch writes every output
with a record per submission.
"""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autograder import gradescope_run
from autograder.cli import main
from autograder.collect import MAX_SUBMISSION_BYTES, SubmissionError, printable, read_cells

PROJECT = Path(__file__).resolve().parent.parent
REFERENCE = (PROJECT / "solutions" / "vae.py").read_text()
CLASS_BUDGET = 420  # seconds for the corpus on 2 jobs; about 2 minutes on a quiet machine


def notebook(*sources: str, **extra) -> str:
    cells = [{"cell_type": "code", "id": f"c{i}", "source": source, "metadata": {}, "outputs": [],
              "execution_count": None} for i, source in enumerate(sources)]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5, **extra})


def write_corpus(folder: Path) -> dict[str, str]:
    """The hostile class; returns {student id: what its record must say (or "100")}."""
    def put(name: str | bytes, content: str | bytes) -> None:
        path = Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(name))))
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    put(b"\xff\xfe-reference.py", REFERENCE)  # a name that is not UTF-8, on an honest submission
    put("line\nbreak.py", "x = 1\n")
    put("magics600.ipynb", notebook("%ls\n" * 600))  # IPython's transformer gave up: RuntimeError
    put("magics499.ipynb", notebook("%ls\n" * 499 + "x = 1\n" * 170_000))  # an hour of IPython in the grader
    put("deep_minus.py", "x = " + "-" * 1_000_000 + "1\n")  # compile: MemoryError in the grader
    put("deep_parens.ipynb", notebook("x = " + "(" * 100_000 + "1" + ")" * 100_000))
    put("huge_cell.ipynb", notebook("x = 1\n" * 300_000))
    put("surrogate_error.py", 'raise ValueError("\\udcff not text")\n')
    put("nested.ipynb", '{"cells": [], "metadata": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}")
    put("many_cells.ipynb", notebook(*["x = 1"] * 6000))
    put("lone_surrogate.ipynb", notebook("x = '\ud800'"))
    put("not_text.ipynb", notebook("x = 1").replace('"source": "x = 1"', '"source": 12345'))
    put("garbage.ipynb", bytes(range(256)) * 8)
    with open(folder / "too_large.ipynb", "wb") as stream:
        stream.truncate(MAX_SUBMISSION_BYTES + 1)
    (folder / "linked.py").symlink_to(PROJECT / "solutions" / "vae.py")
    notes = folder / "sneaky" / "vae"
    notes.mkdir(parents=True)
    (notes / "vae.ipynb").write_text(notebook(REFERENCE))
    (notes / "notes.txt").symlink_to(PROJECT / "autograder" / "hidden_tests" / "test_VAE.py")
    return {
        "\\xff\\xfe-reference": "100", "line\\x0abreak": "not defined",
        "magics600": "lines of IPython syntax", "magics499": "lines of IPython syntax",
        "deep_minus": "Error", "deep_parens": "Error", "huge_cell": "not defined",
        "surrogate_error": "ValueError", "nested": "nested more than", "many_cells": "cells, more than",
        "lone_surrogate": "not valid Unicode", "not_text": "no text as its source",
        "garbage": "not UTF-8", "too_large": "more than the 20 MiB", "linked": "symbolic link",
        "sneaky": "symbolic link",
    }


def said(record: dict) -> str:
    """Everything the record says to the student."""
    return "\n".join([record["error"] or "", *(e["error"] for e in record["cell_errors"]),
                      *(t["message"] for p in record["problems"].values() for t in p["tests"])])


@pytest.mark.slow
def test_a_class_of_hostile_files_is_graded_completely_and_every_output_is_written(tmp_path, monkeypatch):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    expected = write_corpus(folder)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    status = main(["grade", str(folder), "--json", str(out / "grades.json"), "--csv", str(out / "grades.csv"),
                   "--report", str(out / "report"), "--db", str(tmp_path / "grades.sqlite"), "--jobs", "2"])
    elapsed = time.monotonic() - started
    assert status == 0
    records = {r["id"]: r for r in json.loads((out / "grades.json").read_text())["submissions"]}
    assert sorted(records) == sorted(expected)
    for student, words in expected.items():
        if words == "100":
            assert records[student]["score"] == 100, student
        else:
            assert records[student]["score"] == 0 and words in said(records[student]), (student, said(records[student]))
    with open(out / "grades.csv", newline="", encoding="utf-8") as stream:
        assert sorted(row["id"] for row in csv.DictReader(stream)) == sorted(expected)
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert all(student in page for student, record in records.items() if record["error"])  # "not graded" lists them
    assert (out / "report" / "similarity.json").is_file()
    assert elapsed < CLASS_BUDGET

    # The similarity command on the same class: every student compared or said why not.
    assert main(["similarity", str(folder), "--out", str(out / "similarity")]) == 0
    document = json.loads((out / "similarity" / "similarity.json").read_text())
    assert "symbolic link" in document["not_compared"]["linked"] and "nested" in document["not_compared"]["nested"]
    assert (out / "similarity" / "similarity.html").read_text(encoding="utf-8").count("not-compared") == 1


# --- the reader, fuzzed ------------------------------------------------------------------------------
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=30)
CELLS = st.lists(st.fixed_dictionaries({"cell_type": st.sampled_from(["code", "markdown", "raw", 7]),
                                        "source": st.text() | st.lists(st.text(), max_size=3) | JSON_VALUES,
                                        "metadata": JSON_VALUES | st.just({}), "outputs": st.just([])},
                                       optional={"id": st.text(max_size=8), "execution_count": st.none()}),
                 max_size=6)
NOTEBOOKS = st.fixed_dictionaries({"cells": CELLS | JSON_VALUES, "metadata": JSON_VALUES | st.just({})},
                                  optional={"nbformat": st.sampled_from([3, 4, 5, "4"]),
                                            "nbformat_minor": st.integers(0, 6), "worksheets": JSON_VALUES})


def reads_or_refuses(path: Path, content: bytes) -> None:
    """read_cells gives (label, source) texts a worker and every output can take, or SubmissionError."""
    started = time.perf_counter()
    try:
        cells = read_cells(path, content)
    except SubmissionError as error:
        assert str(error)
    else:
        for label, source in cells:
            assert type(label) is str and type(source) is str
            assert label.isprintable()
            source.encode("utf-8")  # valid Unicode: no unpaired surrogate
    assert time.perf_counter() - started < 2


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(NOTEBOOKS)
def test_any_notebook_shaped_json_is_read_or_refused(document):
    text = json.dumps(document, allow_nan=False)
    reads_or_refuses(Path("s.ipynb"), text.encode("utf-8", "surrogatepass"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["s.ipynb", "s.py"]))
def test_any_bytes_are_read_or_refused(content, name):
    reads_or_refuses(Path(name), content)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b),
       st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_a_name_becomes_one_printable_utf8_id_and_two_names_never_share_one(first, second):
    one, other = printable(os.fsdecode(first)), printable(os.fsdecode(second))
    assert one.isprintable()
    one.encode("utf-8")
    assert (one == other) == (first == second)


# --- Gradescope's run_autograder ----------------------------------------------------------------------
def test_gradescope_refuses_an_upload_that_holds_a_symbolic_link(tmp_path, monkeypatch):
    upload = tmp_path / "submission"
    upload.mkdir()
    (upload / "vae.py").symlink_to(PROJECT / "solutions" / "vae.py")
    monkeypatch.setenv("AUTOGRADER_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "no-grader-here"))  # it must refuse before grading
    assert gradescope_run.main() == 0
    document = json.loads((tmp_path / "results" / "results.json").read_text())
    assert document["score"] == 0 and "symbolic links (vae.py), which are refused" in document["output"]
