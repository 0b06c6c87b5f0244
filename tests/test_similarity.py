"""The similarity report: disguised copies are found, independently written solutions are not.

The class (benchmarks/similarity_class.py): the reference notebook and every correct variant of
autograder/catalogue.py, each written into the release notebook on its own (in the benchmark
class the rewrites keep the reference's other functions verbatim: copies by construction),
plus disguised copies of some of them.
"""
from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import similarity
from autograder.cli import main
from autograder.collect import find_submissions
from autograder.pipeline import EXIT_OK
from benchmarks.similarity_class import DISGUISED, independent, write_class


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    return write_class(tmp_path_factory.mktemp("class"))


@pytest.fixture(scope="module")
def compared(class_folder):
    return similarity.compare_submissions(find_submissions([class_folder]))


def test_disguised_copies_are_flagged_and_independent_solutions_are_not(compared):
    flagged = {pair.students for pair in compared.flagged}
    assert flagged == {(f"copy_of_{name}", name) for name in DISGUISED}
    assert len(compared.scores) == len(compared.codes) * (len(compared.codes) - 1) // 2


def test_the_threshold_keeps_a_margin_on_both_sides(class_folder):
    """Independent solutions score well below FLAG_SCORE and disguised copies well above it,
    so the threshold is not tuned to this class to the last digit."""
    codes = [similarity.own_code(s) for s in find_submissions([class_folder])]
    scores = {pair.students: pair.score for pair in similarity.compare(codes, threshold=0.0).flagged}
    highest_independent = max(score for pair, score in scores.items() if independent(pair))
    lowest_copy = min(scores[(f"copy_of_{name}", name)] for name in DISGUISED)
    assert highest_independent < similarity.FLAG_SCORE - 0.15 < similarity.FLAG_SCORE + 0.15 < lowest_copy


def test_the_release_as_handed_out_is_boilerplate(tmp_path):
    """Two students who filled in nothing wrote nothing: their notebooks are not alike."""
    for student in ("ann", "bob"):
        nbformat.write(similarity.release_notebook(), tmp_path / f"{student}.ipynb")
    submissions = find_submissions([tmp_path])
    assert [similarity.own_code(s).code.strip() for s in submissions] == ["", ""]
    assert similarity.compare_submissions(submissions).scores == [0.0]


def test_the_command_writes_the_pairs_as_json_and_side_by_side(class_folder, compared, tmp_path):
    hostile = '<img src=x onerror="alert(1)">'
    folder = tmp_path / "class"
    folder.mkdir()
    for path in class_folder.glob("*reference*"):
        (folder / path.name.replace("copy_of_", hostile)).write_bytes(path.read_bytes())
    (folder / "unreadable.py").write_bytes(b"def f(\xff):\n")  # code that does not compile is still compared
    assert main(["similarity", str(folder), "--out", str(tmp_path / "out")]) == EXIT_OK
    document = json.loads((tmp_path / "out" / "similarity.json").read_text())
    (pair,) = document["pairs"]
    assert pair["students"] == [f"{hostile}reference", "reference"]
    assert pair["score"] == next(p.score for p in compared.flagged if p.students[1] == "reference")
    assert document["not_compared"] == {"unreadable": "the file is not UTF-8 text (byte 6)"}
    page = (tmp_path / "out" / "similarity.html").read_text()
    assert hostile not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;reference" in page
    code = similarity.own_code(find_submissions([folder / "reference.ipynb"])[0]).code
    for start, end in pair["regions"][1]:  # the highlighted regions are the reference's own code
        assert f"<mark>{html.escape(code[start:end])}</mark>" in page


def test_the_class_report_has_the_similarity_section(compared, tmp_path):
    from autograder import outputs
    from autograder.report import build_report
    from tests.test_report import Tables, make_record

    outputs.write_json(tmp_path / "grades.json", [make_record(student) for student in sorted(compared.codes)])
    page = build_report(tmp_path / "grades.json", tmp_path / "report", similarity.html_section(compared)).read_text()
    assert page.index('id="similarity"') > page.index("Scores by problem")
    rows = Tables(page).rows("similar-pairs")
    assert [(r["student a"], r["student b"], float(r["num score"])) for r in rows] == [
        (*pair.students, round(pair.score, 2)) for pair in compared.flagged]
    (distribution,) = Tables(page).rows("similarity-distribution")
    assert int(distribution["count pairs"]) == len(compared.scores) and int(distribution["count flagged"]) == len(rows)
    assert page.count('<div class="pair">') == len(DISGUISED) and page.count("<mark>") > 10


def test_the_scores_do_not_depend_on_python_s_string_hashes(class_folder, compared):
    """copydetect hashes with Python's salted hash(): another salt must give the same JSON."""
    script = ("import json, sys; from pathlib import Path; from autograder import similarity; "
              "from autograder.collect import find_submissions; "
              "print(json.dumps(similarity.json_document(similarity.compare_submissions("
              "find_submissions([Path(sys.argv[1])])))))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", script, str(class_folder)], env=env, capture_output=True,
                           text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    assert json.loads(other.stdout) == json.loads(json.dumps(similarity.json_document(compared)))


def test_bad_input_gets_a_message_and_exit_status_2(class_folder, tmp_path, capsys):
    assert main(["similarity", str(class_folder / "reference.ipynb"), "--out", str(tmp_path)]) == 2
    assert "two or more are needed" in capsys.readouterr().err
    assert main(["similarity", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    flood = tmp_path / "flood.py"
    flood.write_text("x = 1\n" * (similarity.MAX_OWN_CHARS // 6 + 1))
    (own,) = [similarity.own_code(s) for s in find_submissions([flood])]
    assert own.code == "" and "more than 200,000" in own.error
