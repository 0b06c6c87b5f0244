"""The class report: every count and share in report.html agrees with the grades JSON."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from assignment.contract import ELBO_FLOOR_MARGIN, ELBO_MARGIN, PROBLEMS, TOTAL_POINTS
from autograder import outputs
from autograder.mistakes import MISTAKES
from autograder.record import json_document
from autograder.report import ReportError, build_report, main_report
from autograder.scoring import hidden_tests

REFERENCE = Path(__file__).resolve().parent.parent / "solutions" / "vae.py"


def _tests_by_problem() -> dict[str, list[tuple[str, str, int]]]:
    """(name, description, points) of every hidden test, by problem in contract order."""
    tests: dict[str, list[tuple[str, str, int]]] = {problem: [] for problem in PROBLEMS}
    for test in hidden_tests():
        tests[test["problem"]].append((test["name"], test["description"], test["max_score"]))
    return tests


TESTS = _tests_by_problem()  # the real hidden tests: the records below are graded as they would be
REFERENCE_ELBO = -20.2312


def make_record(student: str, outcomes: dict[tuple[str, str], tuple[str, str | None, str]] = {},
                *, default: str = "passed", error: str | None = None, elbo: float | None = None) -> dict:
    """A record in the grader's format: every test passes unless `outcomes[(problem, test)]`
    gives (status, mistake, message); `default` sets the status of the others."""
    problems = {}
    for problem, tests in TESTS.items():
        entries = []
        for name, description, points in tests:
            status, mistake, message = outcomes.get((problem, name), (default, None, "" if default == "passed" else
                                                                      f"Not graded: {error}" if error else
                                                                      "Your code raised NotImplementedError: "))
            entries.append({"name": name, "description": description, "score": points if status == "passed" else 0,
                            "max_score": points, "status": status, "message": message, "mistake": mistake})
        problems[problem] = {"score": sum(t["score"] for t in entries),
                             "max_score": sum(t["max_score"] for t in entries), "tests": entries}
    return {"id": student, "path": f"submissions/{student}.py", "score": sum(p["score"] for p in problems.values()),
            "max_score": TOTAL_POINTS, "error": error, "cell_errors": [], "problems": problems,
            "model": {"heldout_elbo": elbo, "reference_heldout_elbo": None if elbo is None else REFERENCE_ELBO}}


KL_HALF = ("failed", "kl_missing_half", "Checked: ... Likely mistake: It looks like the 1/2 ...")
HOSTILE_ID = 'mallory<img src=x onerror="alert(1)">'
CY = r"cy$\frac$"  # drawn in the model plot: "$" must not start matplotlib's mathtext


def class_records() -> list[dict]:
    records = [
        make_record("ada", elbo=-20.41),
        make_record("stubs", default="failed"),
        # the same mistake caught by two tests counts once for this student
        make_record("bob", {("gaussian_kl", "test_standard_normal_prior"): KL_HALF,
                            ("gaussian_kl", "test_general_prior"): KL_HALF}, elbo=-21.0),
        make_record(CY, {("gaussian_kl", "test_standard_normal_prior"): KL_HALF,
                           ("bernoulli_log_likelihood", "test_binary_pixels"): ("failed", "bll_sign", "Checked: ..."),
                           ("VAE", "test_heldout_elbo_close_to_reference"): ("failed", "not_a_known_code", "Checked: ..."),
                           ("elbo", "test_beta"): ("failed", None, "Checked: ...")}, elbo=-24.3),
        make_record(HOSTILE_ID, default="error", error="the notebook is not valid JSON <script>x</script>"),
        make_record("tim", {("iwae_bound", "test_values"):
                            ("error", None, "your code did not finish within 20 s (time limit)\n\nYour code printed:\n<b>hi</b>"),
                            ("iwae_bound", "test_stable_for_very_negative_log_weights"):
                            ("error", None, "the process running your code was killed by SIGKILL (crash or memory limit)")},
                    elbo=-95.0),
    ]
    return sorted(records, key=lambda r: r["id"])


def write_grades(path: Path, records: list[dict]) -> Path:
    outputs.write_json(path, records)
    return path


# ------------------------------------------------------------------- reading the HTML
class Tables(HTMLParser):
    """Tables by id: a list of rows, each {cell class: text}; and every element id seen."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.ids: set[str] = set()
        self.images: list[str] = []
        self._table = self._cell = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append({})
        elif tag == "td":
            self._cell = attrs["class"]
            self._table[-1][self._cell] = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._table[-1][self._cell] += data

    def rows(self, table: str) -> list[dict[str, str]]:
        return [row for row in self.tables[table] if row]  # the header row has no <td>


def share(count: int, total: int) -> str:
    return f"{100 * count / total:.0f}%"


def check_against_json(report: Tables, records: list[dict]) -> None:
    """Every count and share of the report, recomputed here from the records."""
    n = len(records)
    tests = [(p, t) for r in records for p, entry in r["problems"].items() for t in entry["tests"]]
    (summary,) = report.rows("summary")
    scores = sorted(r["score"] for r in records)
    assert int(summary["count submissions"]) == n
    assert float(summary["num mean"]) == pytest.approx(sum(scores) / n, abs=0.05)
    assert (float(summary["num lowest"]), float(summary["num highest"])) == (scores[0], scores[-1])
    assert int(summary["count full-marks"]) == sum(r["score"] == r["max_score"] for r in records)

    problems = {row["problem"]: row for row in report.rows("problems")}
    assert list(problems) == [p for p in PROBLEMS if any(p in r["problems"] for r in records)]
    for problem, row in problems.items():
        full = sum(r["problems"][problem]["score"] == r["problems"][problem]["max_score"] for r in records)
        assert (int(row["count"]), row["share"]) == (full, share(full, n)), problem

    failed = Counter((p, t["name"]) for p, t in tests if t["status"] == "failed")
    errors = Counter((p, t["name"]) for p, t in tests if t["status"] == "error")
    rows = report.rows("tests")
    assert {(r["problem"], r["test"]) for r in rows} == set(failed) | set(errors)
    for row in rows:
        key = (row["problem"], row["test"])
        assert (int(row["count"]), row["share"], int(row["errors"])) == (failed[key], share(failed[key], n), errors[key])
    assert [int(r["count"]) for r in rows] == sorted((int(r["count"]) for r in rows), reverse=True)

    made = {}
    for r in records:
        for p, entry in r["problems"].items():
            for t in entry["tests"]:
                if t["mistake"] and t["status"] != "passed":
                    made.setdefault(t["mistake"], set()).add(r["id"])
    hints = {m.code: (m.problem, m.hint) for m in MISTAKES}
    if made:
        rows = report.rows("mistakes")
        assert {r["code"] for r in rows} == set(made)
        for row in rows:
            students = made[row["code"]]
            assert (int(row["count"]), row["share"]) == (len(students), share(len(students), n))
            if row["code"] in hints:
                assert (row["problem"], row["hint"]) == hints[row["code"]]
            else:
                assert row["hint"] == row["code"]
            assert set(row["students"].split(", ")) == students
        assert [int(r["count"]) for r in rows] == sorted((int(r["count"]) for r in rows), reverse=True)
    else:
        assert "mistakes" not in report.tables and "no-mistakes" in report.ids

    stuck = {r["id"]: r for r in records
             if r["error"] or any(t["status"] == "error" for e in r["problems"].values() for t in e["tests"])}
    if stuck:
        rows = {row["student"]: row for row in report.rows("not-graded")}
        assert set(rows) == set(stuck)
        for student, row in rows.items():
            record = stuck[student]
            errored = [t for e in record["problems"].values() for t in e["tests"] if t["status"] == "error"]
            assert int(row["count"]) == len(errored)
            first = record["error"] or errored[0]["message"]
            assert first.splitlines()[0][:200] in row["reason"]
    else:
        assert "all-graded" in report.ids

    trained = [r["model"] for r in records if r["model"]["heldout_elbo"] is not None]
    if trained:
        (model,) = report.rows("model")
        assert [int(model[f"count {c}"]) for c in ("trained", "within", "floor", "untrained")] == [
            len(trained),
            sum(m["heldout_elbo"] >= m["reference_heldout_elbo"] - ELBO_MARGIN for m in trained),
            sum(m["heldout_elbo"] >= m["reference_heldout_elbo"] - ELBO_FLOOR_MARGIN for m in trained),
            n - len(trained)]
    else:
        assert "model" not in report.tables and "no-models" in report.ids


# ---------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    records = class_records()
    page = build_report(write_grades(folder / "grades.json", records), folder / "out")
    return records, page, page.read_text(encoding="utf-8")


def test_every_count_and_share_agrees_with_the_json(built):
    records, _, text = built
    check_against_json(Tables(text), records)


def test_the_numbers_of_the_fixture_class(built):
    """The same, spelled out for the hand-made class of 6 (one full marks, one unreadable, ...)."""
    _, _, text = built
    report = Tables(text)
    mistakes = {row["code"]: row for row in report.rows("mistakes")}
    # bob's kl_missing_half was caught by two tests and counts once
    assert [(c, mistakes[c]["count"], mistakes[c]["share"]) for c in mistakes] == [
        ("kl_missing_half", "2", "33%"), ("bll_sign", "1", "17%"), ("not_a_known_code", "1", "17%")]
    assert mistakes["not_a_known_code"]["problem"] == "VAE"
    assert mistakes["kl_missing_half"]["students"] == f"bob, {CY}"
    tests = {(row["problem"], row["test"]): row for row in report.rows("tests")}
    assert tests[("gaussian_kl", "test_standard_normal_prior")]["count"] == "3"  # stubs, bob, CY
    assert tests[("gaussian_kl", "test_standard_normal_prior")]["share"] == "50%"
    assert tests[("iwae_bound", "test_values")]["errors"] == "2"  # the unreadable one and tim
    stuck = {row["student"]: row for row in report.rows("not-graded")}
    assert stuck[HOSTILE_ID]["kind"] == "unreadable" and stuck[HOSTILE_ID]["count"] == str(len(hidden_tests()))
    assert stuck["tim"]["reason"] == "test_values: your code did not finish within 20 s (time limit)"
    (model,) = report.rows("model")
    assert [model[f"count {c}"] for c in ("trained", "within", "floor", "untrained")] == ["4", "2", "3", "2"]


def test_plots_are_written_beside_the_page_and_embedded(built):
    _, page, text = built
    names = ["scores.png", "problems.png", "tests.png", "mistakes.png", "model.png"]
    for name in names:
        data = (page.parent / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
    images = Tables(text).images
    assert len(images) == len(names) and all(src.startswith("data:image/png;base64,") for src in images)
    assert "<script" not in text and "http" not in text  # opens offline, no JavaScript


def test_text_from_the_json_is_escaped(built):
    _, _, text = built
    assert HOSTILE_ID not in text and "<script>x</script>" not in text and "<b>hi</b>" not in text
    assert "mallory&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text


def test_an_empty_class_gives_a_report_that_says_so(tmp_path):
    page = build_report(write_grades(tmp_path / "grades.json", []), tmp_path / "out")
    report = Tables(page.read_text())
    assert "empty-class" in report.ids and not report.tables and not report.images
    assert not list((tmp_path / "out").glob("*.png"))


def test_a_class_without_mistakes_or_errors(tmp_path):
    records = [make_record("ada", elbo=-20.0), make_record("ben", {("elbo", "test_beta"): ("failed", None, "x")})]
    page = build_report(write_grades(tmp_path / "grades.json", records), tmp_path / "out")
    report = Tables(page.read_text())
    check_against_json(report, records)
    assert {"no-mistakes", "all-graded"} <= report.ids and "flagged" not in report.ids
    assert not (tmp_path / "out" / "mistakes.png").exists()


def test_a_record_without_model_reads_as_not_trained(tmp_path):
    """`model` came later in format version 1: older files have none."""
    record = make_record("ada")
    del record["model"]
    page = build_report(write_grades(tmp_path / "grades.json", [record]), tmp_path / "out")
    assert "no-models" in Tables(page.read_text()).ids


def test_a_training_flagged_slow_is_listed_for_review(tmp_path):
    slow = make_record("sam", elbo=-20.0)
    slow["model"].update(slow_training=True, training_steps=250, stopped_early=True, checkpoints=[[250, -20.0]])
    page = build_report(write_grades(tmp_path / "grades.json", [make_record("ada", elbo=-20.0), slow]),
                        tmp_path / "report")
    assert "slow-training" in Tables(page.read_text()).ids and "sam" in page.read_text()


def test_a_flagged_model_is_listed_for_review(tmp_path):
    flagged = make_record("eve", elbo=-9.5)
    flagged["model"]["flagged"] = True
    page = build_report(write_grades(tmp_path / "grades.json", [make_record("ada", elbo=-20.0), flagged]),
                        tmp_path / "out")
    assert "flagged" in Tables(page.read_text()).ids and "review" in page.read_text() and "eve" in page.read_text()


def test_a_model_flagged_for_being_at_the_mark_before_training_is_listed_apart(tmp_path):
    brought = make_record("pat", elbo=-19.6)
    brought["model"].update(flagged=True, pretrained=True, checkpoints=[[0, -19.8], [250, -19.6]])
    page = build_report(write_grades(tmp_path / "grades.json", [make_record("ada", elbo=-20.0), brought]),
                        tmp_path / "out")
    ids = Tables(page.read_text()).ids
    assert "pretrained" in ids and "flagged" not in ids and "pat" in page.read_text()


def _broken(document_change) -> str:
    document = json_document(class_records())
    document_change(document)
    return json.dumps(document)


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", "not a JSON file"),
    (json.dumps({"submissions": []}), 'no "format": "vae-assignment-grades"'),
    (json.dumps([1, 2]), 'no "format": "vae-assignment-grades"'),
    (json.dumps({"format": "vae-assignment-grades", "version": 99, "submissions": []}),
     "version 99 is not supported; this grader reads version 1"),
    (json.dumps({"format": "vae-assignment-grades", "version": 1}), "the document has no 'submissions'"),
    (_broken(lambda d: d["submissions"][3].pop("problems")), "submissions[3] has no 'problems'"),
    (_broken(lambda d: d["submissions"][0].update(score="90")), "submissions[0].score is '90'; expected a number"),
    (_broken(lambda d: d["submissions"][0]["model"].update(flagged=False)),
     "submissions[0].model.flagged is False; expected true (or no key)"),
    (_broken(lambda d: d["submissions"][0]["model"].update(checkpoints=[[250, "-20"]])),
     "submissions[0].model.checkpoints is [[250, '-20']]; expected a list of [step, ELBO or null]"),
    (_broken(lambda d: d["submissions"][0]["model"].update(stopped_early="yes")),
     "submissions[0].model.stopped_early is 'yes'; expected true or false"),
    (_broken(lambda d: d["submissions"][1]["problems"]["elbo"]["tests"][1].update(status="skipped")),
     "submissions[1].problems.elbo.tests[1].status is 'skipped'; expected one of passed, failed, error"),
    (_broken(lambda d: d["submissions"][2]["problems"]["VAE"]["tests"][0].pop("mistake")),
     "submissions[2].problems.VAE.tests[0] has no 'mistake'"),
    (_broken(lambda d: d["submissions"].append(d["submissions"][0])), "two submissions share the id 'ada'"),
])
def test_input_that_is_not_a_grades_file_is_refused_with_a_clear_message(tmp_path, text, words):
    grades = tmp_path / "grades.json"
    grades.write_text(text)
    with pytest.raises(ReportError) as error:
        build_report(grades, tmp_path / "out")
    assert words in str(error.value) and str(grades) in str(error.value)
    assert not (tmp_path / "out" / "report.html").exists()


def test_main_report_prints_where_or_why(tmp_path, capsys):
    grades = write_grades(tmp_path / "grades.json", class_records())
    assert main_report(grades, tmp_path / "out") == 0
    assert str(tmp_path / "out" / "report.html") in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main_report(tmp_path / "bad.json", tmp_path / "out") == 2
    assert "not a grades file" in capsys.readouterr().err


def test_the_report_command(tmp_path, capsys):
    from autograder.cli import main

    grades = write_grades(tmp_path / "grades.json", class_records())
    assert main(["report", str(grades), "--out", str(tmp_path / "cls")]) == 0
    assert (tmp_path / "cls" / "report.html").exists()
    assert main(["report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "none")]) == 2
    assert "cannot be read" in capsys.readouterr().err


# --------------------------------------------------------------- a small real class
STUB = '''
import torch
from torch import nn


def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    raise NotImplementedError()


def reparameterize(mu, logvar):
    raise NotImplementedError()


def bernoulli_log_likelihood(x, logits):
    raise NotImplementedError()


def elbo(x, logits, mu, logvar, beta=1.0):
    raise NotImplementedError()


def gaussian_log_density(z, mu, logvar):
    raise NotImplementedError()


def iwae_bound(x, logits, z, mu, logvar):
    raise NotImplementedError()


class VAE(nn.Module):
    def __init__(self, x_dim=64, z_dim=2, hidden_dim=256):
        super().__init__()
        raise NotImplementedError()
'''
HOSTILE = '''
def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    import os
    os._exit(1)
'''


@pytest.mark.slow
def test_a_graded_class_gives_a_report_that_agrees_with_its_json(tmp_path):
    """Reference, stubs, two catalogued mistakes and a hostile submission, through
    `vae-assignment grade --report` (grades.json is written beside the report)."""
    from autograder.cli import main
    from autograder.catalogue import MISTAKES as CATALOGUE, Variant, build_source, write_submissions

    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(REFERENCE, folder / "ref.py")
    (folder / "stubs.py").write_text(STUB)
    write_submissions(folder, [v for v in CATALOGUE if v.name in ("kl_missing_half", "iwae_missing_log_k")])
    (folder / "hostile.py").write_text(build_source(Variant("hostile", "gaussian_kl", "exits", {"gaussian_kl": HOSTILE})))
    assert main(["grade", str(folder), "--report", str(tmp_path / "report"), "--jobs", "2"]) == 0

    records = json.loads((tmp_path / "report" / "grades.json").read_text())["submissions"]
    report = Tables((tmp_path / "report" / "report.html").read_text())
    check_against_json(report, records)
    scores = {r["id"]: r["score"] for r in records}
    assert scores["ref"] == 100 and scores["stubs"] == 0
    assert {row["code"] for row in report.rows("mistakes")} >= {"kl_missing_half", "iwae_missing_log_k"}
    stuck = {row["student"]: row for row in report.rows("not-graded")}
    assert set(stuck) == {"hostile"} and stuck["hostile"]["kind"] == "worker error"
    assert stuck["hostile"]["reason"].startswith("test_standard_normal_prior: the process running your code")
    for name in ("scores.png", "problems.png", "tests.png", "mistakes.png", "model.png"):
        assert (tmp_path / "report" / name).stat().st_size > 5000
    # Every submission but the stubs is the reference with one function changed: copies of it.
    similar = {(row["student a"], row["student b"]) for row in report.rows("similar-pairs")}
    assert similar == {(a, b) for a in scores for b in scores if a < b and "stubs" not in (a, b)}
