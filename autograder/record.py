"""The grading record, in one place: its format (README.md, "Output formats"), building one and
checking one.

A record is plain JSON data, one per submission. It is built here from the hidden tests'
results (grading.py), and checked here by the one validator wherever it crosses a boundary:
back from a pool process or a cluster (batch.py), read from the store (store.py), read from
a grades file (the report). The grades file is `json_document(records)`.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable

from assignment.contract import PROBLEM_POINTS, PROBLEMS, TOTAL_POINTS

FORMAT = "vae-assignment-grades"
FORMAT_VERSION = 1
STATUSES = ("passed", "failed", "error")
RECORD_KEYS = ("id", "path", "score", "max_score", "error", "cell_errors", "problems")
# `model` and `isolation` came later in version 1: absent means not recorded. `visible_checks`
# only with --gradescope: [{name, passed, output}], no points.
OPTIONAL_KEYS = ("model", "isolation", "visible_checks")
TEST_KEYS = ("name", "description", "score", "max_score", "status", "message", "mistake")
PROBLEM_KEYS = ("score", "max_score", "tests")


class InvalidRecord(ValueError):
    """Something that should be a grading record, or a grades file, but is not: the message
    says what is wrong and where."""


# ------------------------------------------------------------------------------- building
def problems_from(results: list[dict]) -> dict[str, dict]:
    """Group test results (as scoring.py gives them) by contract problem, in contract order, with sums."""
    problems = {name: {"score": 0, "max_score": 0, "tests": []} for name in PROBLEM_POINTS}
    for result in results:
        problem = problems[result["problem"]]
        problem["tests"].append({k: v for k, v in result.items() if k not in ("problem", "seconds")})
        problem["score"] += result["score"]
        problem["max_score"] += result["max_score"]
    return problems


def build(submission_id: str, path: str, problems: dict, error: str | None, isolation: str,
          cell_errors: list[tuple[str, str]] = (), model: dict | None = None) -> dict:
    """A submission's record; `isolation` says how its code was contained (bubblewrap or process)."""
    return {
        "id": submission_id,
        "path": path,
        "score": sum(p["score"] for p in problems.values()),
        "max_score": TOTAL_POINTS,
        "error": error,
        "cell_errors": [{"cell": label, "error": message} for label, message in cell_errors],
        "problems": problems,
        # The trained model's held-out ELBO and the reference's (nats per image), when trained,
        # and how it was trained (model_check.how_trained).
        "model": {"heldout_elbo": None, "reference_heldout_elbo": None, **(model or {})},
        "isolation": isolation,
    }


def json_document(records: list[dict]) -> dict:
    """The grades file: what `grade --json` writes and the report reads."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "submissions": records}


# ----------------------------------------------------------------------------- validating
def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_text_or_null(value: object) -> bool:
    return value is None or isinstance(value, str)


def _fail(message: str) -> None:
    raise InvalidRecord(message)


def _keys(mapping: object, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(mapping, dict):
        _fail(f"{where} is not an object")
    missing = [key for key in required if key not in mapping]
    if missing:
        _fail(f"{where} has no {missing[0]!r}")
    unknown = [key for key in mapping if key not in required and key not in optional]
    if unknown:
        _fail(f"{where} has an unknown key {unknown[0]!r:.60}")
    return mapping


def _field(mapping: dict, key: str, where: str, check: Callable[[object], bool], expected: str) -> object:
    if not check(mapping[key]):
        _fail(f"{where}.{key} is {mapping[key]!r:.60}; expected {expected}")
    return mapping[key]


def _scores(mapping: dict, where: str) -> None:
    maximum = _field(mapping, "max_score", where, lambda v: _is_number(v) and v >= 0, "a number, at least 0")
    _field(mapping, "score", where, lambda v: _is_number(v) and 0 <= v <= maximum, f"a number within 0..{maximum}")


def _sums(mapping: dict, parts: list[dict], where: str, what: str) -> None:
    for key in ("score", "max_score"):
        if not math.isclose(mapping[key], sum(part[key] for part in parts)):
            _fail(f"{where}.{key} is {mapping[key]!r}; expected the sum of its {what}'")


def _check_test(test: object, where: str) -> None:
    _keys(test, where, TEST_KEYS)
    _scores(test, where)
    for key in ("name", "description", "message"):
        _field(test, key, where, _is_text, "text")
    _field(test, "status", where, lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}")
    _field(test, "mistake", where, _is_text_or_null, "text or null")


def _check_problem(problem: object, where: str) -> None:
    _keys(problem, where, PROBLEM_KEYS)
    _scores(problem, where)
    tests = _field(problem, "tests", where, lambda v: isinstance(v, list), "a list of tests")
    for index, test in enumerate(tests):
        _check_test(test, f"{where}.tests[{index}]")
    _sums(problem, tests, where, "tests")


def _is_cell_error(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"cell", "error"} and all(map(_is_text, value.values()))


def _is_visible_check(value: object) -> bool:
    return (isinstance(value, dict) and set(value) == {"name", "passed", "output"} and _is_text(value["name"])
            and type(value["passed"]) is bool and _is_text(value["output"]))


def _is_checkpoint(value: object) -> bool:
    return (isinstance(value, list) and len(value) == 2 and type(value[0]) is int
            and (value[1] is None or _is_number(value[1])))


# The model's keys that are not numbers (or null): how each is checked, and what it must be.
MODEL_FIELDS = {
    "flagged": (lambda v: v is True, "true (or no key)"),
    "slow_training": (lambda v: v is True, "true (or no key)"),
    "pretrained": (lambda v: v is True, "true (or no key)"),
    "stopped_early": (lambda v: type(v) is bool, "true or false"),
    "checkpoints": (lambda v: isinstance(v, list) and all(map(_is_checkpoint, v)), "a list of [step, ELBO or null]"),
}


def _check_model(model: object, where: str) -> None:
    if not isinstance(model, dict):
        _fail(f"{where} is not an object")
    for key, value in model.items():
        check, expected = MODEL_FIELDS.get(key, (lambda v: v is None or _is_number(v), "a number or null"))
        if not check(value):
            _fail(f"{where}.{key} is {value!r:.60}; expected {expected}")


def validate_record(record: object, where: str = "the record") -> dict:
    """`record` when it is a grading record (keys, types, scores that add up within their
    maximum, plain JSON data), else InvalidRecord saying what is wrong at `where`."""
    _keys(record, where, RECORD_KEYS, OPTIONAL_KEYS)
    _field(record, "id", where, lambda v: _is_text(v) and v != "", "non-empty text")
    _field(record, "path", where, _is_text, "text")
    _field(record, "error", where, _is_text_or_null, "text or null")
    _field(record, "max_score", where, lambda v: v == TOTAL_POINTS, str(TOTAL_POINTS))
    _scores(record, where)
    problems = _keys(record["problems"], f"{where}.problems", PROBLEMS)
    for name, problem in problems.items():
        _check_problem(problem, f"{where}.problems.{name}")
    if not math.isclose(record["score"], sum(p["score"] for p in problems.values())):
        _fail(f"{where}.score is {record['score']!r}; expected the sum of its problems'")
    _field(record, "cell_errors", where, lambda v: isinstance(v, list) and all(map(_is_cell_error, v)),
           "a list of {cell, error} texts")
    if "model" in record:
        _check_model(record["model"], f"{where}.model")
    if "isolation" in record:
        _field(record, "isolation", where, _is_text, "text")
    if "visible_checks" in record:
        _field(record, "visible_checks", where, lambda v: isinstance(v, list) and all(map(_is_visible_check, v)),
               "a list of {name, passed, output}")
    try:
        json.dumps(record)
    except (TypeError, ValueError) as error:
        _fail(f"{where} is not plain JSON data: {error}")
    return record


def records_of(document: object) -> list[dict]:
    """The records of a grades file's content (`json_document`), each validated, ids unique;
    else InvalidRecord."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        _fail(f'not a grades file of vae-assignment (no "format": "{FORMAT}"); '
              "write one with `vae-assignment grade ... --json FILE`")
    if document.get("version") != FORMAT_VERSION:
        _fail(f"grades format version {document.get('version')!r} is not supported; "
              f"this grader reads version {FORMAT_VERSION}")
    if "submissions" not in document:
        _fail("the document has no 'submissions'")
    records = _field(document, "submissions", "the document", lambda v: isinstance(v, list), "a list")
    for index, record in enumerate(records):
        validate_record(record, f"submissions[{index}]")
    shared = [student for student, n in Counter(r["id"] for r in records).items() if n > 1]
    if shared:
        _fail(f"two submissions share the id {shared[0]!r}")
    return records
