"""Crash-safe, resumable batches: the store on its own (fast), then `vae-assignment grade` run as
a process and killed with SIGKILL at random moments, with a damaged row, with --regrade, and
stopped with Ctrl-C (slow: each real submission costs ~10 s of CPU)."""
from __future__ import annotations

import importlib.metadata
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from assignment.contract import PROBLEM_POINTS, TOTAL_POINTS
from autograder.catalogue import MISTAKES, build_source
from autograder.record import InvalidRecord, validate_record
from autograder.store import Key, ResultStore, StoreError
from autograder.version import grader_version, grading_sources

PROJECT = Path(__file__).resolve().parent.parent
KEY = Key("ada", "0" * 64, "0.1.0+test")


def make_record(student: str = "ada", passed: bool = True) -> dict:
    """A record in the grader's format, built by hand: one test per problem."""
    problems = {}
    for name, points in PROBLEM_POINTS.items():
        score = points if passed else 0
        test = {"name": f"test_{name}", "description": f"{name} is right", "score": score, "max_score": points,
                "status": "passed" if passed else "failed", "message": "" if passed else "wrong", "mistake": None}
        problems[name] = {"score": score, "max_score": points, "tests": [test]}
    return {"id": student, "path": f"/class/{student}.py", "score": TOTAL_POINTS if passed else 0,
            "max_score": TOTAL_POINTS, "error": None, "cell_errors": [], "problems": problems,
            "model": {"heldout_elbo": -30.5, "reference_heldout_elbo": -30.1}, "isolation": "bubblewrap"}


# ------------------------------------------------------------------------------ the store, fast
def test_a_stored_record_reads_back_equal_and_only_under_its_key(tmp_path):
    with ResultStore(tmp_path / "grades.sqlite") as store:
        store.put(KEY, make_record())
        assert store.get(KEY) == make_record()
        store.put(KEY, make_record(passed=False))  # INSERT OR REPLACE
        assert store.get(KEY)["score"] == 0
        for other in (Key("bob", KEY.sha256, KEY.grader), Key("ada", "1" * 64, KEY.grader),
                      Key("ada", KEY.sha256, "0.2")):
            assert store.get(other) is None  # another student, other bytes, another grader: graded again
    with ResultStore(tmp_path / "grades.sqlite") as reopened:
        assert reopened.get(KEY)["score"] == 0 and reopened.ignored == 0


def _damaged(record: dict, change) -> str:
    change(record)
    return json.dumps(record)


DAMAGED_ROWS = {
    "cut short": json.dumps(make_record())[:500],
    "not JSON": "\x00\x01garbage",
    "a list": "[]",
    "a key missing": _damaged(make_record(), lambda r: r.pop("problems")),
    "score above the maximum": _damaged(make_record(), lambda r: r.update(score=TOTAL_POINTS + 1)),
    "score not the sum": _damaged(make_record(), lambda r: r.update(score=50)),
    "a test above its maximum": _damaged(make_record(), lambda r: r["problems"]["elbo"]["tests"][0].update(score=11)),
    "a bool for a score": _damaged(make_record(), lambda r: r["problems"]["elbo"]["tests"][0].update(score=True)),
    "a problem missing": _damaged(make_record(), lambda r: r["problems"].pop("VAE")),
    "another student's": json.dumps(make_record("bob")),
}


@pytest.mark.parametrize("row", DAMAGED_ROWS.values(), ids=DAMAGED_ROWS)
def test_a_damaged_row_is_ignored(tmp_path, row):
    with ResultStore(tmp_path / "grades.sqlite") as store:
        store.db.execute("INSERT INTO results VALUES (?, ?, ?, ?)", (KEY.submission, KEY.sha256, KEY.grader, row))
        store.db.commit()
        assert store.get(KEY) is None and store.ignored == 1


def test_validate_record_says_what_is_wrong():
    assert validate_record(make_record()) == make_record()
    with pytest.raises(InvalidRecord, match=r"the record.score is 101; expected a number within 0..100"):
        validate_record({**make_record(), "score": 101})
    with pytest.raises(InvalidRecord, match="the record has no 'path'"):
        validate_record({"id": "ada"})
    with pytest.raises(InvalidRecord, match="the record has an unknown key 'grade'"):
        validate_record({**make_record(), "grade": "A"})
    with pytest.raises(InvalidRecord, match=r"the record.problems.elbo.score is 0; expected the sum of its tests'"):
        validate_record({**make_record(), "problems": {**make_record()["problems"], "elbo": {
            **make_record()["problems"]["elbo"], "score": 0}}, "score": TOTAL_POINTS - 10})
    with pytest.raises(InvalidRecord, match="plain JSON"):
        validate_record({**make_record(), "model": {("not", "text"): None}})
    flagged = {**make_record(), "model": {**make_record()["model"], "flagged": True}}
    assert validate_record(flagged) == flagged
    with pytest.raises(InvalidRecord, match="flagged is False; expected true"):
        validate_record({**make_record(), "model": {**make_record()["model"], "flagged": False}})


def test_the_grader_version_covers_what_decides_a_record_and_nothing_else():
    sources = {path.relative_to(PROJECT).as_posix() for path in grading_sources()}
    assert {"solutions/vae.py", "autograder/hidden_tests/test_elbo.py", "autograder/hidden_tests/support.py",
            "autograder/untrusted/worker.py", "autograder/scoring.py", "autograder/worker_client.py",
            "autograder/feedback.py", "autograder/collect.py", "assignment/public/digits.npz"} <= sources
    assert not {"autograder/cli.py", "autograder/batch.py", "autograder/store.py", "autograder/report.py"} & sources
    assert grader_version().startswith(importlib.metadata.version("vae-assignment") + "+")


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "grades.json").write_text('{"not": "sqlite"}' * 100)
    with pytest.raises(StoreError, match="cannot use"):
        ResultStore(tmp_path / "grades.json")


WRITER = """
import sys
from autograder.store import Key, ResultStore
from tests.test_resume import make_record
store = ResultStore(sys.argv[1])
record = make_record()
record["problems"]["elbo"]["tests"][0]["message"] = "x" * 200_000  # a long row: many pages per commit
n = 0
while True:
    store.put(Key(f"s{n}", "0" * 64, "v"), {**record, "id": f"s{n}"})
    n += 1
"""


def test_a_writer_killed_mid_write_leaves_whole_rows_only(tmp_path):
    database = tmp_path / "grades.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(database)], cwd=PROJECT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not database.exists() or _rows(database) < 3):
            time.sleep(0.05)
        time.sleep(random.Random(1).uniform(0, 0.2))
    finally:
        writer.kill()
        writer.wait()
    rows = _rows(database)
    assert rows >= 3
    with ResultStore(database) as store:
        assert all(store.get(Key(f"s{n}", "0" * 64, "v")) is not None for n in range(rows))
        assert store.ignored == 0


def _rows(database: Path) -> int:
    with sqlite3.connect(database, timeout=30) as db:
        try:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


# ------------------------------------------------------------------------- the grader, slow
STUB = '''"""A student who wrote only the first function."""
import torch


def gaussian_kl(mu_q, logvar_q, mu_p=0.0, logvar_p=0.0):
    return 0.5 * (torch.exp(logvar_q) + mu_q**2 - 1.0 - logvar_q).sum(-1)


def reparameterize(mu, logvar):
    raise NotImplementedError()
'''


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    """The reference, a catalogued mistake, a stub and an unreadable file: 3 gradings, ~30 s of CPU."""
    folder = tmp_path_factory.mktemp("class")
    shutil.copy(PROJECT / "solutions" / "vae.py", folder / "ada.py")
    mistake = next(m for m in MISTAKES if m.name == "kl_missing_half")
    (folder / "kl_missing_half.py").write_text(build_source(mistake))
    (folder / "stub.py").write_text(STUB)
    (folder / "syntax.py").write_text("def gaussian_kl(:\n")
    return folder


class Grader:
    """`vae-assignment grade` as a process of its own, watching every process it starts."""

    def __init__(self, folder: Path, work: Path, *extra: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograder.cli", "grade", str(folder), "--json", str(work / "grades.json"),
             "--db", str(work / "grades.sqlite"), *extra],
            cwd=work, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        self.seen: dict[int, tuple[float, str]] = {}
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        root = psutil.Process(self.process.pid)
        while self.process.poll() is None:
            try:
                for child in root.children(recursive=True):
                    self.seen.setdefault(child.pid, (child.create_time(), " ".join(child.cmdline())[:100]))
            except psutil.Error:
                pass
            time.sleep(0.1)

    def started_a_worker(self) -> bool:
        return any("bwrap" in command or "untrusted" in command for _, command in list(self.seen.values()))

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        self.watcher.join()
        return self.process.returncode, out, err

    def left_behind(self, grace: float = 15) -> list[str]:
        """The processes it started that still run (zombies are dead), after up to `grace` s."""
        deadline = time.monotonic() + grace
        while True:
            alive = []
            for pid, (created, command) in self.seen.items():
                try:
                    process = psutil.Process(pid)
                    if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                        alive.append(f"{pid} {command}")
                except psutil.NoSuchProcess:
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


def grade_to_the_end(folder: Path, work: Path, *extra: str) -> str:
    code, out, err = Grader(folder, work, *extra).finish()
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def uninterrupted(class_folder, tmp_path_factory) -> tuple[Path, str]:
    """(the folder of an uninterrupted run: grades.json and grades.sqlite, its output)."""
    work = tmp_path_factory.mktemp("uninterrupted")
    out = grade_to_the_end(class_folder, work)
    return work, out


@pytest.mark.slow
def test_killed_at_random_moments_then_rerun_gives_the_same_json(class_folder, uninterrupted, tmp_path):
    reference, out = uninterrupted
    assert "graded 4 submission(s)" in out and "reused 0 from" in out
    rng = random.Random(20)
    kills = 0
    database = tmp_path / "grades.sqlite"
    for first_run in (True, False):  # once some results are stored, then early in the rerun
        grader = Grader(class_folder, tmp_path)
        if first_run:  # tied to the grader's progress, not to the speed of the machine
            deadline = time.monotonic() + 120
            while grader.process.poll() is None and not (database.exists() and _rows(database)) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.2))
        else:
            time.sleep(rng.uniform(0.5, 2))
        if grader.process.poll() is not None:
            break
        grader.process.kill()  # SIGKILL: no chance to clean up; its pool processes follow it
        grader.finish()
        kills += 1
        assert grader.left_behind() == []
        assert not (tmp_path / "grades.json").exists()
    stored = _rows(database) if database.exists() else 0
    out = grade_to_the_end(class_folder, tmp_path)
    assert kills >= 1
    assert f"reused {stored} from" in out  # nothing stored was graded again
    assert (tmp_path / "grades.json").read_bytes() == (reference / "grades.json").read_bytes()


@pytest.mark.slow
def test_a_damaged_row_is_graded_again_and_regrade_replaces_a_row(class_folder, uninterrupted, tmp_path):
    reference, _ = uninterrupted
    shutil.copy(reference / "grades.sqlite", tmp_path / "grades.sqlite")
    with sqlite3.connect(tmp_path / "grades.sqlite") as db:
        (row,) = db.execute("SELECT record FROM results WHERE submission = 'stub'").fetchone()
        db.execute("UPDATE results SET record = ? WHERE submission = 'stub'", (row[:300],))  # cut short
    out = grade_to_the_end(class_folder, tmp_path)
    assert "graded 1 submission(s)" in out and "reused 3 from" in out and "1 unusable stored result(s) ignored" in out
    assert (tmp_path / "grades.json").read_bytes() == (reference / "grades.json").read_bytes()

    with sqlite3.connect(tmp_path / "grades.sqlite") as db:  # a valid record, but not what the grader gives
        (row,) = db.execute("SELECT record FROM results WHERE submission = 'syntax'").fetchone()
        db.execute("UPDATE results SET record = ? WHERE submission = 'syntax'",
                   (row.replace("SyntaxError", "Tampered"),))
    out = grade_to_the_end(class_folder / "syntax.py", tmp_path, "--regrade")
    assert "graded 1 submission(s)" in out and "reused 0 from" in out
    with sqlite3.connect(tmp_path / "grades.sqlite") as db:
        assert db.execute("SELECT record FROM results WHERE submission = 'syntax'").fetchone() == (row,)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["grader", "process group"])
def test_ctrl_c_stops_everything_and_keeps_what_was_graded(class_folder, tmp_path, target):
    grader = Grader(class_folder, tmp_path)
    deadline = time.monotonic() + 120
    while not grader.started_a_worker() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    if target == "grader":
        grader.process.send_signal(signal.SIGINT)
    else:  # what a terminal does
        os.killpg(grader.process.pid, signal.SIGINT)
    stopped = time.monotonic()
    code, _, err = grader.finish()
    assert code == 130 and time.monotonic() - stopped < 15
    kept = _rows(tmp_path / "grades.sqlite")
    assert f"interrupted: {kept} of 4 graded and kept in {tmp_path / 'grades.sqlite'}; " \
           "run the same command again to resume" in err
    assert grader.left_behind(grace=5) == []
    assert not (tmp_path / "grades.json").exists()
