"""Where graded records are kept as soon as they are graded, so that a batch can resume.

A SQLite file (the standard library's; nbgrader's gradebook is SQLite too) holds one row per
(student id, sha256 of the submission's bytes, grader version) with the record as JSON text.
Each record is written in a transaction of its own, so a grader killed at any moment leaves
whole rows only; a row is read back only when it is still a valid record, so a damaged row
costs a regrade, never a wrong grade. The grading process is the only writer.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from autograder.record import validate_record


class StoreError(Exception):
    """The --db file cannot be opened as a store of results."""


@dataclass(frozen=True)
class Key:
    """What a stored record is valid for: this student, these bytes, this grader."""
    submission: str
    sha256: str
    grader: str


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
        except (ValueError, TypeError):  # InvalidRecord, or JSON cut short
            record = None
        if record is None or record["id"] != key.submission:  # damaged, or another student's
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
