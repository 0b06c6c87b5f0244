"""Where graded records are kept as soon as they are graded, so that a batch can resume.

A SQLite file (the standard library's; nbgrader's gradebook is SQLite too) holds one row per
(student id, sha256 of the submission's bytes, grader version) with the record as JSON text.
Each record is written in a transaction of its own, so a grader killed at any moment leaves
whole rows only; a row is read back only when it is still a valid record, so a damaged row
costs a regrade, never a wrong grade. The grading process is the only writer.
"""
from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from autograder.contract import PROBLEMS, TOTAL_POINTS

RECORD_KEYS = ("id", "path", "score", "max_score", "error", "cell_errors", "problems", "model", "isolation")
OPTIONAL_KEYS = ("visible_checks",)  # with --gradescope: [{name, passed, output}], no points
TEST_KEYS = ("name", "description", "score", "max_score", "status", "message", "mistake")
STATUSES = ("passed", "failed", "error")


class InvalidRecord(ValueError):
    """Something that should be a grading record but is not (the message says what is wrong)."""


class StoreError(Exception):
    """The --db file cannot be opened as a store of results."""


@dataclass(frozen=True)
class Key:
    """What a stored record is valid for: this student, these bytes, this grader."""
    submission: str
    sha256: str
    grader: str


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidRecord(message)


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _check_scores(what: str, score: object, max_score: object) -> None:
    _require(_is_number(score) and _is_number(max_score), f"{what}: score and max_score must be numbers")
    _require(0 <= score <= max_score, f"{what}: score {score} is not within 0..{max_score}")


def _check_test(where: str, test: object) -> None:
    _require(isinstance(test, dict) and set(test) == set(TEST_KEYS), f"{where}: a test must have the keys {TEST_KEYS}")
    _check_scores(where, test["score"], test["max_score"])
    _require(test["status"] in STATUSES, f"{where}: status {test['status']!r} is not one of {STATUSES}")
    _require(all(isinstance(test[k], str) for k in ("name", "description", "message")),
             f"{where}: name, description and message must be text")
    _require(test["mistake"] is None or isinstance(test["mistake"], str), f"{where}: mistake must be text or null")


def _check_problem(name: str, problem: object) -> None:
    _require(isinstance(problem, dict) and set(problem) == {"score", "max_score", "tests"},
             f"problem {name}: must have score, max_score and tests")
    _check_scores(f"problem {name}", problem["score"], problem["max_score"])
    tests = problem["tests"]
    _require(isinstance(tests, list), f"problem {name}: tests must be a list")
    for number, test in enumerate(tests, start=1):
        _check_test(f"problem {name}, test {number}", test)
    _require(math.isclose(problem["score"], sum(t["score"] for t in tests))
             and math.isclose(problem["max_score"], sum(t["max_score"] for t in tests)),
             f"problem {name}: its scores are not the sums of its tests' scores")


def validate_record(record: object) -> dict:
    """`record` when it is a grading record (README's format: keys, types, scores that add up
    within their maximum, plain JSON data), else InvalidRecord. What comes back from a pool
    process or a cluster, and what is read from the store, passes here first."""
    _require(isinstance(record, dict) and set(RECORD_KEYS) <= set(record) <= {*RECORD_KEYS, *OPTIONAL_KEYS},
             f"a record must have the keys {RECORD_KEYS} (and maybe {OPTIONAL_KEYS})")
    _require(isinstance(record["id"], str) and isinstance(record["path"], str), "id and path must be text")
    _require(record["error"] is None or isinstance(record["error"], str), "error must be text or null")
    _require(isinstance(record["isolation"], str), "isolation must be text")
    _require(record["max_score"] == TOTAL_POINTS, f"max_score must be {TOTAL_POINTS}")
    _check_scores("the record", record["score"], record["max_score"])
    problems = record["problems"]
    _require(isinstance(problems, dict) and set(problems) == set(PROBLEMS), f"problems must be {PROBLEMS}")
    for name, problem in problems.items():
        _check_problem(name, problem)
    _require(math.isclose(record["score"], sum(p["score"] for p in problems.values())),
             "the score is not the sum of the problems' scores")
    cell_errors = record["cell_errors"]
    _require(isinstance(cell_errors, list) and all(
        isinstance(c, dict) and set(c) == {"cell", "error"} and all(isinstance(v, str) for v in c.values())
        for c in cell_errors), "cell_errors must be a list of {cell, error} texts")
    model = record["model"]
    _require(isinstance(model, dict) and all(v is None or type(v) in (int, float)
                                             for k, v in model.items() if k != "flagged"),
             "model must map names to numbers or null")
    _require(model.get("flagged", True) is True, "model.flagged must be true when present (flagged for review)")
    checks = record.get("visible_checks", [])
    _require(isinstance(checks, list) and all(
        isinstance(c, dict) and set(c) == {"name", "passed", "output"} and isinstance(c["name"], str)
        and type(c["passed"]) is bool and isinstance(c["output"], str) for c in checks),
        "visible_checks must be a list of {name, passed, output}")
    try:
        json.dumps(record)
    except (TypeError, ValueError) as error:
        raise InvalidRecord(f"not plain JSON data: {error}") from None
    return record


class ResultStore:
    """Records by Key in a SQLite file; `ignored` counts stored rows that failed validation."""

    def __init__(self, path: Path):
        self.path = path
        self.ignored = 0
        try:
            self.db = sqlite3.connect(path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a crash keeps whole commits
            self.db.execute("CREATE TABLE IF NOT EXISTS results (submission TEXT NOT NULL, sha256 TEXT NOT NULL, "
                            "grader TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (submission, sha256, grader))")
        except sqlite3.Error as error:
            raise StoreError(f"cannot use {path} as the results database: {error}") from None

    def get(self, key: Key) -> dict | None:
        """The stored record for `key`, or None when there is none or it is not a valid record."""
        row = self.db.execute("SELECT record FROM results WHERE submission = ? AND sha256 = ? AND grader = ?",
                              (key.submission, key.sha256, key.grader)).fetchone()
        if row is None:
            return None
        try:
            record = validate_record(json.loads(row[0]))
            _require(record["id"] == key.submission, "the record is another student's")
        except (ValueError, TypeError):  # InvalidRecord, or JSON cut short
            self.ignored += 1
            return None
        return record

    def put(self, key: Key, record: dict) -> None:
        """Store `record` (valid: see validate_record) under `key`, replacing what was there."""
        with self.db:  # one transaction: the row is there whole or not at all
            self.db.execute("INSERT OR REPLACE INTO results (submission, sha256, grader, record) VALUES (?, ?, ?, ?)",
                            (key.submission, key.sha256, key.grader, json.dumps(record)))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
